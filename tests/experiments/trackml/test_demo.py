"""The whole demo pipeline, at toy sizes: every stage runs and writes what it promises."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hepattn.cli import main
from hepattn.data.trackml import find_events, read_event
from hepattn.experiments.trackml.dataset import load_event
from hepattn.experiments.trackml.demo import (
    LONG,
    PIXEL_VOLUMES,
    TRAINING_FIELDS,
    DemoSettings,
    check_settings,
    config,
    model_overrides,
    run_demo,
    train,
)
from hepattn.experiments.trackml.reco import filter_probability
from hepattn.experiments.trackml.submission import TrainedModels, model_from_checkpoint, needs_cells
from hepattn.models.layers import SwiGLU
from hepattn.training.cli import build, load_weights
from hepattn.training.fit import last_checkpoint

pytest.importorskip("acts", reason="the demo simulates events: needs the sim extra")


def assert_metrics_are_the_rates_of_their_counts(metrics: dict) -> None:
    """Each rate is its count over its denominator (0 if that is 0); counts nest; rates lie in [0, 1]."""
    c, f, t = metrics["counts"], metrics["filter"], metrics["tracking"]
    assert all(type(n) is int and n >= 0 for n in c.values()), c
    assert c["particles"] > 0 and c["target_hits"] > 0  # the test events hold reconstructable particles
    assert c["target_hits_kept"] <= min(c["target_hits"], c["hits_kept"]) and c["hits_kept"] <= c["hits"]
    assert c["perfect_found"] <= min(c["dm_found"], c["lhc_found"])  # a perfect track is DM and LHC
    assert max(c["dm_found"], c["lhc_found"], c["targets_retained"]) <= c["particles"]
    assert max(c["fake_tracks"], c["duplicate_tracks"], c["tracks_passing_cuts"]) <= c["tracks"]
    assert c["fake_tracks_passing_cuts"] <= min(c["fake_tracks"], c["tracks_passing_cuts"])

    events = t["num_test_events"]

    def ratio(num: str, den: str):
        return pytest.approx(c[num] / c[den] if c[den] else 0.0)

    assert f["hit_efficiency"] == ratio("target_hits_kept", "target_hits")
    assert f["hit_purity"] == ratio("target_hits_kept", "hits_kept")
    assert f["particle_retention"] == ratio("targets_retained", "particles")
    for rate, count in (("dm", "dm_found"), ("perfect", "perfect_found"), ("lhc", "lhc_found")):
        assert t[f"{rate}_efficiency"] == ratio(count, "particles"), rate
    assert t["fake_rate_all"] == ratio("fake_tracks", "tracks")
    assert t["fake_rate"] == ratio("fake_tracks_passing_cuts", "tracks_passing_cuts")
    assert t["duplicate_rate"] == ratio("duplicate_tracks", "tracks")
    assert f["hits_per_event_before"] == pytest.approx(c["hits"] / events)
    assert f["hits_per_event_after"] == pytest.approx(c["hits_kept"] / events)
    assert t["tracks_per_event"] == pytest.approx(c["tracks"] / events)
    rates = {**f, **t}
    for key in ("hit_efficiency", "hit_purity", "roc_auc", "particle_retention", "dm_efficiency",
                "perfect_efficiency", "lhc_efficiency", "fake_rate", "fake_rate_all", "duplicate_rate",
                "trackml_score"):  # fmt: skip
        assert 0.0 <= rates[key] <= 1.0, key  # NaN fails too


TINY = DemoSettings(
    pileup=2.0,
    train_events=3,
    val_events=1,
    test_events=2,
    filter_steps=2,
    tracker_steps=2,
    threshold=0,
)


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory, trackml_dir):
    """A demo run at toy sizes (models of 2 steps): its folder and metrics."""
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, TINY, detectors=trackml_dir / "detectors.csv.gz")


def official_trackml_score(truth: pd.DataFrame, submission: pd.DataFrame) -> float:
    """The TrackML score as the challenge's trackml-library defines it (``score.score_event``), restated.

    Each track's majority particle is the one with most of its hits (the lowest particle_id among
    equals); the pair is good when it holds more than half of the track's hits and more than half of the
    particle's; the score is the summed weight of the good pairs' shared hits over the total weight.
    """
    ev = truth[["hit_id", "particle_id", "weight"]].merge(
        submission[["hit_id", "track_id"]], on="hit_id", how="left", validate="one_to_one"
    )
    pairs = (
        ev.groupby(["track_id", "particle_id"]).agg(n=("weight", "size"), w=("weight", "sum")).reset_index()
    )
    major = pairs.sort_values(["track_id", "n", "particle_id"], ascending=[True, False, True])
    major = major.drop_duplicates("track_id")
    track_hits = major["track_id"].map(ev.groupby("track_id").size())
    particle_hits = major["particle_id"].map(ev.groupby("particle_id").size())
    good = (2 * major["n"] > track_hits) & (2 * major["n"] > particle_hits)
    return float(major["w"][good].sum() / ev["weight"].sum())


@pytest.mark.slow
@pytest.mark.requiresdata
def test_submission_holds_every_hit_once_and_its_score_is_the_official_one(tiny_demo):
    out, metrics = tiny_demo
    submission = pd.read_csv(out / "submission.csv")
    scores = []
    for prefix in find_events(out / "events" / "test"):
        frames = read_event(prefix, ["hits", "truth"])
        hits, truth = frames["hits"], frames["truth"]
        mine = submission[submission.event_id == int(prefix.name[5:])]
        assert sorted(mine.hit_id) == sorted(hits.hit_id)  # every hit once, strips too (track_id 0)
        strips = hits.hit_id[~hits.volume_id.isin(PIXEL_VOLUMES)]
        assert (mine.set_index("hit_id").track_id[strips] == 0).all()
        scored = hits.hit_id[hits.volume_id.isin(PIXEL_VOLUMES)]
        scores.append(
            official_trackml_score(truth[truth.hit_id.isin(scored)], mine[mine.hit_id.isin(scored)])
        )
    assert pd.api.types.is_integer_dtype(submission.track_id)
    assert metrics["tracking"]["trackml_score"] == pytest.approx(np.mean(scores), abs=1e-6)


def test_the_official_score_restated_matches_hand_counts():
    truth = pd.DataFrame(
        {
            "hit_id": range(1, 9),
            "particle_id": [5, 5, 5, 5, 7, 7, 7, 0],
            "weight": [0.1, 0.2, 0.2, 0.1, 0.15, 0.1, 0.15, 0.0],
        }
    )
    # track 1 holds 3 of particle 5's 4 hits (good); track 2 holds 7's hits 5, 6 and the noise hit:
    # 2 of its 3 hits and 2 of 7's 3 hits, good too; hit 7 is alone on track 3 (1 of 3: not good)
    submission = pd.DataFrame({"hit_id": range(1, 9), "track_id": [1, 1, 1, 0, 2, 2, 3, 2]})
    assert official_trackml_score(truth, submission) == pytest.approx(0.5 + 0.25)
    assert official_trackml_score(truth, submission.assign(track_id=0)) == 0.0  # one track, 5's 4 of 8
    assert official_trackml_score(truth, submission.assign(track_id=truth.particle_id)) == pytest.approx(1.0)


@pytest.mark.slow
@pytest.mark.requiresdata
def test_a_checkpoint_rebuilt_from_its_saved_config_is_the_trained_model(tiny_demo):
    out, _ = tiny_demo
    checkpoint = last_checkpoint(out / "filter")
    trained = load_weights(
        build([config("trackml/filter_small.yaml")], model_overrides(TINY, False)).model, checkpoint
    )
    event = load_event(next((out / "prepared" / "test").glob("*.npz")))
    expected = filter_probability(trained, event)
    assert np.array_equal(filter_probability(model_from_checkpoint(checkpoint), event), expected)


@pytest.mark.slow
@pytest.mark.requiresdata
def test_reconstruct_without_truth_gives_the_demos_tracks(tiny_demo, tmp_path):
    out, _ = tiny_demo
    for path in (out / "events" / "test").iterdir():
        if "-hits." in path.name or "-cells." in path.name:
            shutil.copy(path, tmp_path)  # a test event as the challenge gave it: no particles, no truth
    args = ["reconstruct", "--models", str(out), "--input", str(tmp_path), "--out", str(tmp_path / "sub.csv")]
    assert main(args) == 0
    again = pd.read_csv(tmp_path / "sub.csv")
    assert not (tmp_path / "sub.h5").exists()  # nothing to score without truth
    pd.testing.assert_frame_equal(again, pd.read_csv(out / "submission.csv"))


@pytest.mark.slow
@pytest.mark.requiresdata
def test_demo_runs_end_to_end(tiny_demo, trackml_dir):
    tmp_path, metrics = tiny_demo
    tiny = TINY
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["tracking"]["num_test_events"] == 2
    for section, keys in {
        "filter": ["hit_efficiency", "hit_purity", "roc_auc", "particle_retention", "hits_per_event_before",
                   "hits_per_event_after"],
        "tracking": ["dm_efficiency", "perfect_efficiency", "lhc_efficiency", "fake_rate", "fake_rate_all",
                     "duplicate_rate", "trackml_score", "num_test_events", "pt_min"],
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


def test_a_folder_of_models_from_older_configs_is_refused(tmp_path):
    held = {key: getattr(DemoSettings(), key) for key in TRAINING_FIELDS if key != "configs_version"}
    (tmp_path / "settings.json").write_text(json.dumps(held))  # made before the filter knew has_cells
    with pytest.raises(ValueError, match=r"configs_version 1 -> 3"):
        check_settings(tmp_path, DemoSettings())
    (tmp_path / "settings.json").write_text(json.dumps(held | {"configs_version": 2}))  # before eta_pv
    with pytest.raises(ValueError, match=r"configs_version 2 -> 3"):
        check_settings(tmp_path, DemoSettings())


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


@pytest.mark.slow
@pytest.mark.requiresdata
def test_reconstruct_real_test_events_writes_one_row_per_hit(tiny_demo, trackml_dir, tmp_path):
    out, _ = tiny_demo
    real = tmp_path / "real"
    real.mkdir()
    for event in ("event000000002", "event000000003"):  # the real test events: hits, no cells, no truth
        shutil.copy(trackml_dir / f"{event}-hits.csv.gz", real)
    assert (
        main(["reconstruct", "--models", str(out), "--input", str(real), "--out", str(tmp_path / "s.csv")])
        == 0
    )
    submission = pd.read_csv(tmp_path / "s.csv")
    assert submission.columns.tolist() == ["event_id", "hit_id", "track_id"]
    assert pd.api.types.is_integer_dtype(submission.track_id) and (submission.track_id >= 0).all()
    for event_id in (2, 3):
        hits = read_event(real / f"event00000000{event_id}", ["hits"])["hits"]
        mine = submission[submission.event_id == event_id]
        assert len(mine) == len(hits) and sorted(mine.hit_id) == sorted(hits.hit_id)
    assert set(submission.event_id) == {2, 3}


def test_a_filter_that_reads_cells_without_their_flag_refuses_an_event_without_them_naming_the_file():
    fields = (
        "--model.model.init_args.input_nets=[{class_path: hepattn.models.embed.InputNet, init_args: "
        "{input_name: hit, fields: [x, y, z, r, eta, phi, u, v, ncells, charge, extent_u, extent_v], "
        "dim: 48}}]"
    )
    needs = build([config("trackml/filter_small.yaml")], [fields]).model
    knows = build([config("trackml/filter_small.yaml")]).model  # the shipped one reads has_cells
    assert needs_cells(needs) and not needs_cells(knows)
    models = TrainedModels([needs], None, PIXEL_VOLUMES, sources={"filters": ["f.ckpt"]})
    with pytest.raises(FileNotFoundError, match=r"no ev/event000000002-cells\.csv .*f\.ckpt reads cell"):
        models.reconstruction(Path("ev/event000000002"), with_cells=False)
    assert models.reconstruction(Path("ev/event000000002"), with_cells=True).filter is needs
    both = TrainedModels([knows], None, PIXEL_VOLUMES)
    assert both.reconstruction(Path("ev/event000000002"), with_cells=False).filter is knows
