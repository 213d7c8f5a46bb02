import numpy as np
import pytest

from hepattn.metrics.binned import binned_rate
from hepattn.metrics.filter import roc_auc, roc_curve
from hepattn.metrics.plots import event_display, rate_plot, residual_plot, roc_plot, track_display


def test_event_display_colours_particles_and_greys_noise(tmp_path):
    rng = np.random.default_rng(0)
    n = 500
    pid = rng.integers(0, 20, n)  # 0 is noise
    fig = event_display(rng.normal(0, 300, n), rng.normal(0, 300, n), rng.normal(0, 900, n), pid)
    ax_xy, ax_rz = fig.axes
    grey, coloured = ax_xy.collections
    assert len(grey.get_offsets()) == (pid == 0).sum()
    assert len(coloured.get_offsets()) == (pid != 0).sum()
    assert ax_rz.get_xlabel() == "z [mm]" and ax_rz.get_ylabel() == "r [mm]"
    fig.savefig(tmp_path / "event.png", dpi=40)
    assert (tmp_path / "event.png").stat().st_size > 1000


def test_event_display_without_truth_draws_every_hit_grey():
    fig = event_display([1.0, 2.0], [0.0, 1.0], [5.0, 6.0], None)
    grey, coloured = fig.axes[0].collections
    assert len(grey.get_offsets()) == 2 and len(coloured.get_offsets()) == 0


def test_track_display_greys_hits_without_a_track():
    hit_track = np.array([-1, 0, 0, 5, 5, 5, -1, 2])
    rng = np.random.default_rng(1)
    fig = track_display(*rng.normal(0, 100, (3, len(hit_track))), hit_track)
    grey, coloured = fig.axes[0].collections
    assert len(grey.get_offsets()) == 2 and len(coloured.get_offsets()) == 6
    assert "3 predicted tracks" in fig.get_suptitle()


def test_rate_plot_draws_one_curve_per_rate_at_the_binned_values(tmp_path):
    rng = np.random.default_rng(2)
    pt = rng.uniform(1, 100, 500)
    curves = {"DM": pt > 3, "perfect": pt > 10, "LHC": pt > 2}
    bins = np.geomspace(1, 100, 6)
    fig = rate_plot(pt, curves, bins, "pT [GeV]", logx=True)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(curves)
    assert len(ax.containers) == 3 and ax.get_xscale() == "log"
    x, y = ax.containers[1].lines[0].get_data()
    centres, rate, _, _ = binned_rate(curves["perfect"], pt, bins, log=True)
    assert np.allclose(x, centres) and np.allclose(y, rate)
    fig.savefig(tmp_path / "rate.png", dpi=30)


@pytest.mark.parametrize(("positive_score", "auc"), [(0.9, 1.0), (0.1, 0.0), (0.5, 0.5)])
def test_roc_plot_draws_the_roc_curve_and_quotes_the_area_under_it(positive_score, auc):
    """Positives above, below or tied with every negative (score 0.5): AUC 1, 0 and 1/2 by definition."""
    label = np.array([True, True, True, False, False])
    score = np.where(label, positive_score, 0.5)
    fpr, tpr = roc_curve(score, label)
    ax = roc_plot(fpr, tpr, roc_auc(score, label)).axes[0]
    curve, chance = ax.lines
    x, y = curve.get_xdata(), curve.get_ydata()
    assert np.array_equal(x, fpr) and np.array_equal(y, tpr)  # false positives across, true positives up
    assert np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) == pytest.approx(auc)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"AUC = {auc:.4f}", "chance"]
    assert chance.get_xydata().tolist() == [[0, 0], [1, 1]]
    assert roc_plot(fpr, tpr).axes[0].get_legend().get_texts()[0].get_text() == "filter"  # no AUC given


def test_residual_plot_has_one_panel_per_field_with_mean_and_width():
    rng = np.random.default_rng(4)
    residuals = {"pt": rng.normal(0.05, 0.02, 1000), "eta": rng.normal(0, 0.001, 1000), "vz": np.array([])}
    fig = residual_plot(residuals)
    assert [ax.get_xlabel() for ax in fig.axes] == [
        "pT (pred - true) / true",
        "eta, pred - true",
        "vertex z, pred - true [mm]",
    ]
    legend = fig.axes[0].get_legend().get_texts()[0].get_text()
    mean = float(legend.split("\n")[0].split()[1])
    assert mean == pytest.approx(residuals["pt"].mean(), rel=1e-2)
    assert fig.axes[2].get_legend() is None  # an empty field gives an empty panel
