"""The whole demo pipeline, at toy sizes: every stage runs and writes what it promises."""

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch

from hepattn.experiments.trackml.demo import (
    LONG,
    TRAINING_FIELDS,
    DemoSettings,
    check_settings,
    config,
    last_checkpoint,
    model_overrides,
    run_demo,
    train,
)
from hepattn.models.layers import SwiGLU
from hepattn.training.cli import build

pytest.importorskip("acts", reason="the demo simulates events: needs the sim extra")


def assert_metrics_are_the_rates_of_their_counts(metrics: dict) -> None:
    """Each rate is its count over its denominator (0 if that is 0); counts nest; rates lie in [0, 1]."""
    c, f, t = metrics["counts"], metrics["filter"], metrics["tracking"]
    assert all(type(n) is int and n >= 0 for n in c.values()), c
    assert c["particles"] > 0 and c["target_hits"] > 0  # the test events hold reconstructable particles
    assert c["target_hits_kept"] <= min(c["target_hits"], c["hits_kept"]) and c["hits_kept"] <= c["hits"]
    assert c["perfect_found"] <= min(c["dm_found"], c["lhc_found"])  # a perfect track is DM and LHC
    assert max(c["dm_found"], c["lhc_found"], c["targets_retained"]) <= c["particles"]
    assert max(c["fake_tracks"], c["duplicate_tracks"]) <= c["tracks"]

    def ratio(num: str, den: str):
        return pytest.approx(c[num] / c[den] if c[den] else 0.0)

    assert f["hit_efficiency"] == ratio("target_hits_kept", "target_hits")
    assert f["hit_purity"] == ratio("target_hits_kept", "hits_kept")
    assert f["particle_retention"] == ratio("targets_retained", "particles")
    for rate, count in (("dm", "dm_found"), ("perfect", "perfect_found"), ("lhc", "lhc_found")):
        assert t[f"{rate}_efficiency"] == ratio(count, "particles"), rate
    assert t["fake_rate"] == ratio("fake_tracks", "tracks")
    assert t["duplicate_rate"] == ratio("duplicate_tracks", "tracks")
    events = t["num_test_events"]
    assert f["hits_per_event_before"] == pytest.approx(c["hits"] / events)
    assert f["hits_per_event_after"] == pytest.approx(c["hits_kept"] / events)
    assert t["tracks_per_event"] == pytest.approx(c["tracks"] / events)
    rates = {**f, **t}
    for key in ("hit_efficiency", "hit_purity", "roc_auc", "particle_retention", "dm_efficiency",
                "perfect_efficiency", "lhc_efficiency", "fake_rate", "fake_rate_pt_min", "duplicate_rate",
                "trackml_score"):  # fmt: skip
        assert 0.0 <= rates[key] <= 1.0, key  # NaN fails too


@pytest.mark.slow
@pytest.mark.requiresdata
def test_demo_runs_end_to_end(tmp_path, trackml_dir):
    tiny = DemoSettings(
        pileup=2.0, train_events=3, val_events=1, test_events=2, filter_steps=2, tracker_steps=2, threshold=0
    )
    metrics = run_demo(tmp_path, tiny, detectors=trackml_dir / "detectors.csv.gz")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["tracking"]["num_test_events"] == 2
    for section, keys in {
        "filter": ["hit_efficiency", "hit_purity", "roc_auc", "particle_retention", "hits_per_event_before",
                   "hits_per_event_after"],
        "tracking": ["dm_efficiency", "perfect_efficiency", "lhc_efficiency", "fake_rate", "duplicate_rate",
                     "trackml_score", "num_test_events", "pt_min"],
        "timing": ["simulate_s", "train_filter_s", "train_tracker_s", "inference_ms_per_event"],
    }.items():  # fmt: skip
        assert set(keys) <= set(saved[section]), section
        assert saved[section] == pytest.approx(metrics[section])
    assert_metrics_are_the_rates_of_their_counts(saved)
    submission = pd.read_csv(tmp_path / "submission.csv")
    assert submission.event_id.nunique() == 2
    assert (tmp_path / "report.md").read_text().startswith("# hepattn demo report")
    for stage in ("events/train", "prepared/test", "filtered/train", "predictions.h5"):
        assert (tmp_path / stage).exists(), stage
    assert list((tmp_path / "filter").rglob("last.ckpt")) and list((tmp_path / "tracker").rglob("last.ckpt"))
    # a rerun reuses both trained models (no new training run) and may change the reconstruction
    again = run_demo(tmp_path, replace(tiny, min_track_hits=4), detectors=trackml_dir / "detectors.csv.gz")
    for model in ("filter", "tracker"):
        assert again["timing"][f"train_{model}_s"] == metrics["timing"][f"train_{model}_s"]
        assert len(list((tmp_path / model).rglob("last.ckpt"))) == 1
    assert again["settings"]["min_track_hits"] == 4


def test_rerun_with_other_training_settings_is_refused(tmp_path):
    check_settings(tmp_path, DemoSettings())
    check_settings(tmp_path, replace(DemoSettings(), track_threshold=0.5))  # reconstruction only: allowed
    with pytest.raises(ValueError, match=rf"tracker_steps {DemoSettings().tracker_steps} -> 7000"):
        check_settings(tmp_path, replace(DemoSettings(), tracker_steps=7000))


def test_a_folder_from_before_a_training_field_existed_holds_its_earlier_default(tmp_path):
    held = {key: getattr(LONG, key) for key in TRAINING_FIELDS if key != "mlp_ratio"}
    (tmp_path / "settings.json").write_text(json.dumps(held))
    check_settings(tmp_path, LONG)  # made with the configs' feed-forward width, 4, as LONG still is
    with pytest.raises(ValueError, match=r"mlp_ratio 4.0 -> 2.0"):
        check_settings(tmp_path, replace(LONG, mlp_ratio=2.0))


def test_model_overrides_shape_the_built_models():
    overrides = model_overrides(replace(DemoSettings(), mlp_ratio=2.0), decoder=True)
    model = build([config("trackml/tracking_small.yaml")], overrides).model.model
    for blocks in (model.encoder, model.decoder):
        widths = {m.fc2.in_features for m in blocks.modules() if isinstance(m, SwiGLU)}
        assert widths == {85}  # 2/3 x 2 x 64: SwiGLU keeps the parameters of a GELU MLP of width 2 x 64


def test_finished_training_is_reused_and_the_newest_checkpoint_wins(tmp_path):
    for version, step in ((0, 5), (2, 40), (10, 100)):
        folder = tmp_path / "lightning_logs" / f"version_{version}" / "checkpoints"
        folder.mkdir(parents=True)
        torch.save({"global_step": step}, folder / "last.ckpt")
    (tmp_path / "train_seconds.txt").write_text("12.5\n")
    newest = tmp_path / "lightning_logs" / "version_10" / "checkpoints" / "last.ckpt"
    assert last_checkpoint(tmp_path) == newest
    # the run reached its steps: nothing is built or trained (the configs are not even read)
    assert train([tmp_path / "missing.yaml"], {}, 100, tmp_path) == (newest, 12.5)
    assert last_checkpoint(tmp_path / "nothing") is None
