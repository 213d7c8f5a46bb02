"""The whole demo pipeline, at toy sizes: every stage runs and writes what it promises."""

import json

import pandas as pd
import pytest

from hepattn.experiments.demo import DemoSettings, run_demo

pytest.importorskip("acts", reason="the demo simulates events: needs the sim extra")


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
    for value in (*saved["filter"].values(), *saved["tracking"].values()):
        assert value == value  # no NaN
    assert 0.0 <= saved["tracking"]["dm_efficiency"] <= 1.0
    submission = pd.read_csv(tmp_path / "submission.csv")
    assert submission.event_id.nunique() == 2
    assert (tmp_path / "report.md").read_text().startswith("# hepattn demo report")
    for stage in ("events/train", "prepared/test", "filtered/train", "predictions.h5"):
        assert (tmp_path / stage).exists(), stage
    assert list((tmp_path / "filter").rglob("last.ckpt")) and list((tmp_path / "tracker").rglob("last.ckpt"))
