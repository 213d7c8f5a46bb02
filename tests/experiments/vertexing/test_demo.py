"""``hepattn demo vertexing`` at toy size: every stage runs and writes what it promises."""

import json

import numpy as np
import pytest

from hepattn.cli import main

pytest.importorskip("acts", reason="the demo simulates events: needs the sim extra")
pytestmark = pytest.mark.requiresdata


@pytest.fixture(scope="module")
def toy_demo(tmp_path_factory, trackml_dir, monkeypatch_module):
    from hepattn.experiments.vertexing import demo

    monkeypatch_module.setenv("HEPATTN_TRACKML_DIR", str(trackml_dir))
    toy = demo.VertexingSettings(
        pileup=5, train_events=3, val_events=1, test_events=2, steps=2, workers=1, processes=1
    )
    monkeypatch_module.setattr(demo, "QUICK", toy)
    out = tmp_path_factory.mktemp("vertexing")
    assert main(["demo", "vertexing", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_the_demo_writes_metrics_report_plots_and_each_methods_files(toy_demo):
    metrics = json.loads((toy_demo / "metrics.json").read_text())
    for method in ("model", "amvf", "truth_fit"):
        for key in ("efficiency", "fake_rate_per_event", "merge_rate", "split_rate", "z_resolution_mm"):
            assert key in metrics[method]
        assert metrics[method]["num_test_events"] == 2 and metrics[method]["pileup"] == 5
        assert "hs_selection_efficiency" in metrics[method] and "hs_z_resolution_mm" in metrics[method]
    assert metrics["amvf"]["seeder"] in ("gaussian", "grid")
    # only the model predicts an uncertainty: its pulls are scored, and its vertices.csv carries sigma_z
    assert "z_pull_width" in metrics["model"] and "z_pull_width" not in metrics["amvf"]
    assert "sigma_z" in (toy_demo / "model" / "vertices.csv").read_text().splitlines()[0]
    assert "model_ms_per_event" in metrics["timing"]
    assert (toy_demo / "report.md").read_text().count("| efficiency |") == 1
    for name in (
        "efficiency_vs_ntracks.png",
        "efficiency_vs_nvertices.png",
        "z_residuals.png",
        "z_resolution_vs_ntracks.png",
        "z_resolution_vs_nvertices.png",
    ):
        assert (toy_demo / name).stat().st_size > 0
    for method in ("model", "amvf_gaussian", "amvf_grid", "truth_fit"):
        assert (toy_demo / method / "vertices.csv").is_file()
        assert (toy_demo / method / "track_vertex.csv").is_file()


def test_the_truth_fit_files_hold_every_truth_vertex_with_its_own_tracks(toy_demo):
    from hepattn.experiments.vertexing.events import read_events
    from hepattn.experiments.vertexing.outputs import read_method

    events = read_events(toy_demo / "events" / "test")
    for event, found in zip(events, read_method(toy_demo / "truth_fit", events), strict=True):
        assert len(found.vertices) == len(event.truth)
        # vertex k is the k-th truth vertex: the track links reproduce the truth grouping
        truth_number = np.searchsorted(event.truth.id.to_numpy(), event.track_truth) + 1
        assert (found.track_vertex == np.where(event.track_truth > 0, truth_number, 0)).all()
        assert np.abs(found.vertices.z.to_numpy() - event.truth.z.to_numpy()).max() < 0.5
