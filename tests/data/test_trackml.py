import gzip
import pickle

import numpy as np
import pandas as pd
import pytest

from hepattn.data import trackml
from hepattn.data.trackml import (
    COLUMNS,
    PARTS,
    TrackMLFormatError,
    event_complete,
    event_prefix,
    read_detectors,
    read_event,
    write_event,
)

HITS_HEADER = "hit_id,x,y,z,volume_id,layer_id,module_id"
HITS_ROWS = [
    "1,-75.8026,-7.44536,-1502.5,7,2,1",
    "2,-90.9684,-2.62038,-1502.5,7,2,1",
    "3,31.5,0.25,12.0,8,2,5",
]


def synthetic_event(seed: int = 0, n_hits: int = 30) -> dict[str, pd.DataFrame]:
    """A small consistent event in the dtypes a simulation produces (float64, int64), columns shuffled."""
    rng = np.random.default_rng(seed)
    particle_id = 4503668346847232 + np.arange(4) * 68719476736  # real TrackML ids need all 64 bits
    owner = rng.choice(np.append(particle_id, 0), n_hits)  # 0: noise
    hit_id = np.arange(1, n_hits + 1)
    x = rng.normal(0, 300, n_hits)
    x[:4] = [np.finfo(np.float32).max, np.finfo(np.float32).smallest_subnormal, -0.0, 1 / 3]
    hits = pd.DataFrame(
        {
            "z": rng.uniform(-3000, 3000, n_hits),
            "hit_id": hit_id,
            "x": x,
            "y": rng.normal(0, 300, n_hits),
            "volume_id": rng.choice([7, 8, 9], n_hits),
            "layer_id": rng.choice([2, 4, 6], n_hits),
            "module_id": rng.integers(1, 2000, n_hits),
        }
    )
    kinematics = {c: rng.normal(0, 1, 4) for c in ("vx", "vy", "vz", "px", "py", "pz")}
    particles = pd.DataFrame(
        {
            "particle_id": particle_id,
            **kinematics,
            "q": [1, -1, 1, -1],
            "nhits": np.bincount(np.searchsorted(particle_id, owner[owner > 0]), minlength=4),
        }
    )
    truth = pd.DataFrame(
        {"hit_id": rng.permutation(hit_id), "particle_id": owner}
        | {c: rng.normal(0, 100, n_hits) for c in ("tx", "ty", "tz", "tpx", "tpy", "tpz")}
        | {"weight": np.where(owner > 0, 1e-5, 0.0)}
    )
    cells = pd.DataFrame(
        {
            "hit_id": np.repeat(hit_id, 2),
            "ch0": rng.integers(0, 1000, 2 * n_hits),
            "ch1": rng.integers(0, 1000, 2 * n_hits),
            "value": rng.uniform(0, 1, 2 * n_hits),
        }
    )
    return {"hits": hits, "cells": cells, "particles": particles, "truth": truth}


def as_schema(frame: pd.DataFrame, part: str) -> pd.DataFrame:
    return frame[list(COLUMNS[part])].astype(COLUMNS[part]).reset_index(drop=True)


def write_hits_text(tmp_path, rows, header=HITS_HEADER, name="event000000001-hits.csv"):
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_event_prefix_has_nine_digits(tmp_path):
    assert event_prefix(tmp_path, 123) == tmp_path / "event000000123"
    with pytest.raises(ValueError, match="9 digits"):
        event_prefix(tmp_path, -1)


@pytest.mark.parametrize("compress", [True, False])
def test_write_then_read_gives_back_every_part_in_the_trackml_dtypes(tmp_path, compress):
    frames = synthetic_event()
    prefix = event_prefix(tmp_path, 7)
    write_event(prefix, frames, compress=compress)
    back = read_event(prefix, PARTS)
    assert list(back) == list(PARTS)
    for part in PARTS:
        pd.testing.assert_frame_equal(back[part], as_schema(frames[part], part), check_exact=True)


def test_every_finite_float32_survives_write_and_read_bit_for_bit(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2**32, 20_000, dtype=np.uint32).view(np.float32)
    x = np.concatenate([x[np.isfinite(x)], np.float32([-0.0, 1e-45, 3.4028235e38])])
    n = len(x)
    hits = pd.DataFrame(
        {"hit_id": np.arange(n), "x": x, "y": x[::-1], "z": x, "volume_id": 7, "layer_id": 2, "module_id": 1}
    )
    write_event(tmp_path / "event000000001", {"hits": hits})
    back = read_event(tmp_path / "event000000001", ["hits"])["hits"]
    assert np.array_equal(back["x"].to_numpy().view(np.uint32), x.view(np.uint32))


def test_same_data_gives_identical_bytes(tmp_path):
    frames = synthetic_event()
    # the same values as float32 with the columns in TrackML order: the files must not change
    again = {part: as_schema(frame, part) for part, frame in frames.items()}
    write_event(tmp_path / "a" / "event000000001", frames)
    write_event(tmp_path / "b" / "event000000001", again)
    for part in PARTS:
        name = f"event000000001-{part}.csv.gz"
        first, second = ((tmp_path / d / name).read_bytes() for d in ("a", "b"))
        assert first == second
        assert first[4:8] == b"\0\0\0\0"  # gzip mtime
    text = gzip.decompress((tmp_path / "a" / "event000000001-hits.csv.gz").read_bytes()).decode()
    assert text.splitlines()[0] == HITS_HEADER


def test_missing_file_names_both_paths_tried(tmp_path):
    prefix = event_prefix(tmp_path, 3)
    write_event(prefix, {"hits": synthetic_event()["hits"]})
    with pytest.raises(FileNotFoundError) as err:
        read_event(prefix, ["hits", "truth"])
    assert f"{prefix}-truth.csv " in str(err.value) and f"{prefix}-truth.csv.gz" in str(err.value)


@pytest.mark.parametrize(
    ("header", "column", "problem"),
    [
        ("hit_id,x,z,volume_id,layer_id,module_id", "y", "missing"),
        (HITS_HEADER + ",charge", "charge", "unexpected"),
    ],
)
def test_missing_or_extra_column_is_named(tmp_path, header, column, problem):
    fields = header.count(",") + 1
    path = write_hits_text(tmp_path, [",".join(["1"] * fields)], header=header)
    with pytest.raises(TrackMLFormatError, match=problem) as err:
        read_event(tmp_path / "event000000001", ["hits"])
    assert (err.value.path, err.value.column) == (path, column)
    assert str(path) in str(err.value) and repr(column) in str(err.value)


@pytest.mark.parametrize(
    ("column", "text", "problem"),
    [
        ("x", "abc", "not a number: 'abc'"),
        ("z", "", "missing value"),
        ("y", "1e999", "infinite"),
        ("hit_id", "2.5", "not an integer: '2.5'"),
        ("volume_id", "-7", "negative"),
        ("module_id", "99999999999999999999", "outside the int64 range"),
    ],
)
def test_bad_value_names_file_column_and_line(tmp_path, column, text, problem):
    rows = [row.split(",") for row in HITS_ROWS]
    rows[1][HITS_HEADER.split(",").index(column)] = text
    path = write_hits_text(tmp_path, [",".join(row) for row in rows])
    with pytest.raises(TrackMLFormatError) as err:
        read_event(tmp_path / "event000000001", ["hits"])
    assert (err.value.path, err.value.column, err.value.row) == (path, column, 1)
    assert str(err.value).startswith(f"{path}: column {column!r} row 1 (line 3): ") and problem in str(
        err.value
    )
    assert str(pickle.loads(pickle.dumps(err.value))) == str(err.value)


@pytest.mark.parametrize(
    ("rows", "problem"),
    [([], "empty file"), (["1,2,3,4,5,6,7,8,9"], "one field per column")],
)
def test_unreadable_table_names_the_file(tmp_path, rows, problem):
    path = tmp_path / "event000000001-hits.csv"
    path.write_text("" if not rows else "\n".join([HITS_HEADER, *rows]) + "\n")
    with pytest.raises(TrackMLFormatError, match=problem) as err:
        read_event(tmp_path / "event000000001", ["hits"])
    assert err.value.path == path


@pytest.mark.parametrize("damage", ["truncated", "not gzip"])
def test_corrupt_gzip_names_the_file(tmp_path, damage):
    prefix = event_prefix(tmp_path, 1)
    write_event(prefix, {"hits": synthetic_event(n_hits=2000)["hits"]})
    path = tmp_path / "event000000001-hits.csv.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else gzip.decompress(data))
    with pytest.raises(TrackMLFormatError, match="gzip") as err:
        read_event(prefix, ["hits"])
    assert err.value.path == path


def test_hits_and_truth_must_hold_the_same_hit_ids(tmp_path):
    frames = synthetic_event()
    truth = frames["truth"][frames["truth"]["hit_id"] != 5]
    prefix = event_prefix(tmp_path, 1)
    with pytest.raises(TrackMLFormatError, match="without a row in"):
        write_event(prefix, {"hits": frames["hits"], "truth": truth})
    assert list(tmp_path.iterdir()) == []
    write_event(prefix, {"hits": frames["hits"]})  # each file is fine alone
    write_event(prefix, {"truth": truth})
    with pytest.raises(TrackMLFormatError) as err:
        read_event(prefix, ["hits", "truth"])
    assert (err.value.column, err.value.path.name) == ("hit_id", "event000000001-hits.csv.gz")
    assert "hit without a row in event000000001-truth.csv.gz: 5" in str(err.value)


@pytest.mark.parametrize(
    ("part", "change", "match"),
    [
        ("hits", lambda f: f.drop(columns="y"), "'y': missing"),
        ("hits", lambda f: f.astype({"hit_id": float}), "'hit_id': dtype float64 cannot be written as int64"),
        ("hits", lambda f: f.assign(x=np.where(f.index == 3, np.nan, f["x"])), "'x' row 3 .*NaN"),
        ("particles", lambda f: f.assign(particle_id=f["particle_id"].iloc[0]), "repeated particle_id"),
        ("particles", lambda f: f.assign(q=2**40), "outside the int32 range"),
    ],
)
def test_write_refuses_a_bad_frame_and_writes_nothing(tmp_path, part, change, match):
    frames = synthetic_event()
    frames[part] = change(frames[part])
    with pytest.raises(TrackMLFormatError, match=match):
        write_event(event_prefix(tmp_path, 1), frames)
    assert list(tmp_path.iterdir()) == []


class Crash(BaseException):
    """Stands for Ctrl-C or a kill the process survives long enough to unwind."""


@pytest.mark.parametrize("where", ["_encode", "fsync", "replace"])
def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch, where):
    prefix = event_prefix(tmp_path, 1)
    old, new = synthetic_event(seed=1), synthetic_event(seed=2)
    write_event(prefix, old)
    owner = trackml if where == "_encode" else trackml.os
    original = getattr(owner, where)
    calls = []

    def second_call_crashes(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Crash
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, where, second_call_crashes)
    with pytest.raises(Crash):
        write_event(prefix, new)
    monkeypatch.undo()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files
    if where == "replace":  # old files removed, one new part in place, hits (renamed last) missing
        assert not event_complete(prefix)
        present = [part for part in PARTS if event_complete(prefix, [part])]
        assert present == ["cells"]
        pd.testing.assert_frame_equal(read_event(prefix, present)["cells"], as_schema(new["cells"], "cells"))
    else:  # crashed before anything was renamed: the previous event is intact
        for part, frame in read_event(prefix, PARTS).items():
            pd.testing.assert_frame_equal(frame, as_schema(old[part], part))
    write_event(prefix, new)
    assert event_complete(prefix)


def test_rewrite_with_other_compression_replaces_the_file(tmp_path):
    prefix = event_prefix(tmp_path, 1)
    frames = synthetic_event()
    write_event(prefix, {"hits": frames["hits"], "truth": frames["truth"]})
    assert event_complete(prefix, ["hits", "truth"]) and not event_complete(prefix)
    write_event(prefix, {"hits": frames["hits"]}, compress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "event000000001-hits.csv",
        "event000000001-truth.csv.gz",
    ]
    (tmp_path / "event000000001-hits.csv.gz").write_bytes(b"")
    with pytest.raises(TrackMLFormatError, match="exists too"):
        read_event(prefix, ["hits"])


def real_file(trackml_dir, name):
    path = trackml_dir / name
    if not path.is_file():
        pytest.skip(f"real TrackML file {path} is absent")
    return path


@pytest.mark.requiresdata
def test_real_hits_of_test_event_2(trackml_dir, tmp_path):
    real_file(trackml_dir, "event000000002-hits.csv.gz")
    hits = read_event(event_prefix(trackml_dir, 2), ["hits"])["hits"]
    assert len(hits) == 105_772
    assert hits.dtypes.to_dict() == COLUMNS["hits"]
    assert np.array_equal(hits["hit_id"], np.arange(1, len(hits) + 1))
    assert set(hits["volume_id"]) == {7, 8, 9, 12, 13, 14, 16, 17, 18}
    write_event(event_prefix(tmp_path, 2), {"hits": hits})
    pd.testing.assert_frame_equal(read_event(event_prefix(tmp_path, 2), ["hits"])["hits"], hits)


@pytest.mark.requiresdata
def test_real_particles_of_training_event_1000(trackml_dir):
    real_file(trackml_dir, "event000001000-particles.csv.gz")
    particles = read_event(event_prefix(trackml_dir, 1000), ["particles"])["particles"]
    assert len(particles) == 12_263
    assert particles.dtypes.to_dict() == COLUMNS["particles"]
    with_hits = particles["nhits"][particles["nhits"] > 0]
    assert len(with_hits) == 10_565
    assert with_hits.mean() == pytest.approx(9.8, abs=0.05)
    assert (np.hypot(particles["px"], particles["py"]) > 1).sum() == 1_383
    assert set(particles["q"]) == {-1, 1}


@pytest.mark.requiresdata
def test_real_detectors_hold_every_module_hit_in_event_2(trackml_dir):
    modules = read_detectors(real_file(trackml_dir, "detectors.csv.gz"))
    assert len(modules) == 18_728
    assert modules.dtypes.to_dict() == COLUMNS["detectors"]
    real_file(trackml_dir, "event000000002-hits.csv.gz")
    hits = read_event(event_prefix(trackml_dir, 2), ["hits"])["hits"]
    keys = ["volume_id", "layer_id", "module_id"]
    assert pd.MultiIndex.from_frame(hits[keys]).isin(pd.MultiIndex.from_frame(modules[keys])).all()
    rotation = modules[[f"rot_{a}{b}" for a in "xyz" for b in "uvw"]].to_numpy().reshape(-1, 3, 3)
    np.testing.assert_allclose(np.abs(np.linalg.det(rotation)), 1, atol=1e-4)  # orthonormal frames
