import numpy as np
import pandas as pd
import pytest

from hepattn.data.sim.digitize import decode_particle_id, encode_particle_id, noise_hits, truth_weights
from hepattn.data.sim.run import stop_soft_secondaries


def test_particle_id_round_trip_matches_real_layout():
    # 4503668346847232 is the first particle of real event 1000: vertex 1, particle 1, a primary
    assert encode_particle_id(1, 1, 0, 0, 0) == 4503668346847232
    fields = {
        "vertex": [1, 215],
        "particle": [1, 61442],
        "generation": [0, 2],
        "sub": [0, 9],
        "process": [0, 2],
    }
    decoded = decode_particle_id(encode_particle_id(*fields.values()))
    assert {k: v.tolist() for k, v in decoded.items()} == fields


def test_soft_secondaries_keep_only_their_first_hit():
    # particle 1: primary; 2: secondary with pT 0.1 GeV (below the 0.15 threshold); 3: secondary at 0.5 GeV
    hits = pd.DataFrame({"particle_id": [1, 1, 1, 2, 2, 2, 3, 3], "index": [0, 1, 2, 0, 1, 2, 0, 1]})
    secondaries = pd.DataFrame({"particle_id": [2, 3], "px": [0.06, 0.3], "py": [0.08, 0.4]})
    kept = stop_soft_secondaries(hits, secondaries)
    assert kept.particle_id.tolist() == [1, 1, 1, 2, 3, 3]
    assert kept["index"].tolist() == [0, 1, 2, 0, 0, 1]


def test_truth_weights_follow_the_trackml_rules():
    # particle 1: 10 hits at 5 GeV; particle 2: 10 hits at 0.3 GeV; particle 3: 3 hits; then one noise hit
    pid = np.array([1] * 10 + [2] * 10 + [3] * 3 + [0])
    rank = np.array([*range(10), *range(10), *range(3), 0])
    nhits = np.array([10] * 20 + [3] * 3 + [0])
    pt = np.array([5.0] * 10 + [0.3] * 10 + [5.0] * 3 + [0.0])
    w = truth_weights(pid, rank, nhits, pt)
    assert w.sum() == pytest.approx(1.0)
    assert (w[20:] == 0).all()  # short particles and noise weigh nothing
    assert w[0] > w[5] < w[9]  # the ends of a track weigh more than its middle
    assert np.allclose(w[10:20] / w[:10], 0.2)  # soft particles weigh 0.2 of hard ones
    assert w[:10].sum() == pytest.approx(1 / 1.2)  # each track's order weights sum to 1 before pT
    long = truth_weights(np.ones(25, int), np.arange(25), np.full(25, 25), np.full(25, 5.0))
    assert (long[20:] == 0).all() and long.sum() == pytest.approx(1.0)  # tracks count up to 20 hits


@pytest.fixture(scope="module")
def modules(trackml_dir):
    from hepattn.data import trackml
    from hepattn.data.sim.detector import Modules

    return Modules.from_frame(trackml.read_detectors(trackml_dir / "detectors.csv.gz"))


@pytest.mark.requiresdata
def test_noise_lies_on_its_modules(modules):
    rows, xyz = noise_hits(modules, 0.94, np.random.default_rng(0))
    assert len(rows) == pytest.approx(0.94 * len(modules), rel=0.05)
    assert modules.inside(rows, modules.to_local(rows, xyz)).all()


def _simulate(tmp_path, trackml_dir, name, seed, **kwargs):
    from hepattn.data.sim.run import simulate

    out = tmp_path / name
    simulate(
        out,
        events=2,
        seed=seed,
        workers=1,
        first_event=7,
        detectors=trackml_dir / "detectors.csv.gz",
        **kwargs,
    )
    return out


@pytest.fixture(scope="module")
def gun_runs(tmp_path_factory, trackml_dir):
    pytest.importorskip("acts")
    tmp = tmp_path_factory.mktemp("gun")
    return [
        _simulate(tmp, trackml_dir, name, seed, process="gun", pileup=0)
        for name, seed in [("a", 1), ("b", 1), ("c", 2)]
    ]


def _bytes(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.glob("event*"))}


@pytest.mark.requiresdata
def test_same_seed_same_bytes_other_seed_differs(gun_runs):
    a, b, c = map(_bytes, gun_runs)
    assert len(a) == 8  # two events, four parts each
    assert a == b
    assert all(a[name] != c[name] for name in a)


@pytest.mark.requiresdata
def test_every_hit_lies_on_a_real_module(gun_runs, modules):
    from hepattn.data import trackml

    frames = trackml.read_event(trackml.event_prefix(gun_runs[0], 7), ["hits", "truth", "particles", "cells"])
    hits, truth = frames["hits"], frames["truth"]
    index = {tuple(ids): i for i, ids in enumerate(modules.ids.tolist())}
    rows = np.array(
        [index[k] for k in hits[["volume_id", "layer_id", "module_id"]].itertuples(index=False, name=None)]
    )
    true_local = modules.to_local(rows, truth[["tx", "ty", "tz"]].to_numpy(np.float64))
    measured_local = modules.to_local(rows, hits[["x", "y", "z"]].to_numpy(np.float64))
    assert modules.inside(rows, true_local).all()
    assert modules.inside(rows, measured_local, tolerance=1e-2).all()  # float32 text of the position
    assert (truth.particle_id > 0).sum() >= 8 * 10  # ten gun muons with about 12 hits each
    counts = truth.particle_id[truth.particle_id > 0].value_counts()
    nhits = frames["particles"].set_index("particle_id").nhits
    assert (nhits.loc[counts.index] == counts).all()


@pytest.mark.requiresdata
def test_low_pileup_pythia_event(tmp_path, trackml_dir):
    pytest.importorskip("acts")
    pytest.importorskip("pythia8mc")
    from hepattn.data import trackml

    out = tmp_path / "mu2"
    from hepattn.data.sim.run import simulate

    assert simulate(
        out, events=1, pileup=2, seed=3, process="minbias", detectors=trackml_dir / "detectors.csv.gz"
    ) == [1000]
    frames = trackml.read_event(trackml.event_prefix(out, 1000))
    ids = decode_particle_id(frames["particles"].particle_id.to_numpy())
    assert ids["vertex"].min() == 1 and ids["generation"].max() >= 0
    assert (frames["particles"].q != 0).all()
    assert frames["truth"].weight.sum() == pytest.approx(1.0, abs=1e-4)
