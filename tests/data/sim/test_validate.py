import json

import numpy as np
import pandas as pd
import pytest

from hepattn.data.sim.digitize import encode_particle_id
from hepattn.data.sim.validate import compare, hits_per_layer, hits_per_volume, particle_summary, validate
from hepattn.data.trackml import event_prefix, write_event


def hits(volumes: list[int], layers: list[int]) -> pd.DataFrame:
    n = len(volumes)
    return pd.DataFrame(
        {
            "hit_id": np.arange(1, n + 1),
            "x": np.linspace(30.0, 1000.0, n),
            "y": np.zeros(n),
            "z": np.linspace(-100.0, 100.0, n),
            "volume_id": volumes,
            "layer_id": layers,
            "module_id": np.ones(n, dtype=int),
        }
    )


def particles() -> pd.DataFrame:
    """Three particles with hits (pT 0.5, 2 and 3 GeV; one a secondary at r 5 mm) and one without."""
    return pd.DataFrame(
        {
            "particle_id": encode_particle_id([1, 1, 1, 2], [1, 2, 3, 1], [0, 0, 1, 0], 0, 0),
            "vx": [0.0, 0.0, 3.0, 0.0],
            "vy": [0.0, 0.0, 4.0, 0.0],
            "vz": [-1.0, 1.0, 10.0, 0.0],
            "px": [0.5, 0.0, 3.0, 0.2],
            "py": [0.0, 2.0, 0.0, 0.0],
            "pz": [0.0, 2.0, 0.0, 0.0],
            "q": [1, -1, 1, 1],
            "nhits": [4, 10, 7, 0],
        }
    )


def test_hits_are_counted_per_event_and_compared():
    sim = [hits([8, 8, 8, 13], [2, 2, 4, 2]), hits([8, 8], [2, 4])]  # volume 13 only in one event
    real = [hits([8, 8, 7], [2, 4, 2])]
    volumes = compare(hits_per_volume(sim), hits_per_volume(real))
    assert volumes.index.tolist() == [7, 8, 13]
    assert volumes.real.tolist() == [1.0, 2.0, 0.0]
    assert volumes.sim.tolist() == [0.0, 2.5, 0.5]
    assert volumes.ratio.iloc[:2].tolist() == [0.0, 1.25] and np.isnan(volumes.ratio.iloc[2])
    layers = compare(hits_per_layer(sim), hits_per_layer(real))
    assert layers.loc[(8, 2)].tolist() == [1.0, 1.5, 1.5]
    assert layers.loc[(8, 4)].tolist() == [1.0, 1.0, 1.0]


def test_particle_summary_of_a_known_event():
    summary = particle_summary([particles(), particles()])
    assert summary["events"] == 2
    assert summary["particles"] == 4 and summary["with_hits"] == 3
    assert summary["nhits_mean"] == pytest.approx(7.0) and summary["nhits_max"] == 10
    assert summary["pt_gt_1"] == 2 and summary["pt_median"] == pytest.approx(2.0)
    assert summary["abs_eta_mean"] == pytest.approx(np.arcsinh(1.0) / 3)
    assert summary["vz_std"] == pytest.approx(1.0)  # of the two particles with hits made on the beam line
    assert summary["vr_median"] == 0.0
    assert summary["secondary_fraction"] == pytest.approx(1 / 3)


@pytest.mark.requiresdata
def test_validate_writes_tables_json_and_figures(trackml_dir, tmp_path, capsys):
    sim_dir = tmp_path / "sim"
    for event_id, layers in ((1000, [2, 4, 2]), (1001, [2, 2, 4])):
        frames = {"hits": hits([8, 8, 13], layers), "particles": particles()}
        write_event(event_prefix(sim_dir, event_id), frames)
    result = validate(sim_dir, trackml_dir, tmp_path / "out")
    assert result["sim_events"] == ["event000001000", "event000001001"]
    volume_8 = next(row for row in result["volumes"] if row["volume_id"] == 8)
    assert volume_8["sim"] == 2.0 and volume_8["real"] > 20_000
    assert result["particles"]["real"]["particles"] == 12_263
    assert result["particles"]["sim"]["nhits_mean"] == pytest.approx(7.0)
    saved = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert saved["volumes"] == result["volumes"]
    for name in ("hits_per_volume", "hits_per_layer", "nhits", "pt", "eta", "vz"):
        assert (tmp_path / "out" / f"{name}.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "8 pixel barrel" in printed and "nhits_mean" in printed
