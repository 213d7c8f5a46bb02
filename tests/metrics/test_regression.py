import numpy as np
import pytest

from hepattn.metrics.regression import pulls, regression_residuals, residual_summaries, residual_summary


def test_a_known_shift_gives_that_residual():
    true = {
        "pt": np.array([1.0, 2.0, 10.0]),
        "eta": np.array([0.0, 1.0, -2.0]),
        "vz": np.array([0.0, 5.0, -3.0]),
    }
    pred = {"pt": true["pt"] * 1.1, "eta": true["eta"] + 0.02, "vz": true["vz"] - 0.5, "extra": np.zeros(3)}
    r = regression_residuals(pred, true)
    assert list(r) == ["pt", "eta", "vz"]  # fields without truth are skipped
    assert r["pt"] == pytest.approx([0.1] * 3) and r["eta"] == pytest.approx([0.02] * 3)
    assert r["vz"] == pytest.approx([-0.5] * 3)
    s = residual_summaries(r)["eta"]
    assert s["mean"] == pytest.approx(0.02) and s["std"] == pytest.approx(0, abs=1e-12)
    assert s["width"] == pytest.approx(0, abs=1e-12) and s["count"] == 3


def test_phi_residual_wraps_across_pi():
    true = np.array([3.1, -3.1, 0.5, np.pi - 0.01])
    pred = np.array([-3.1, 3.1, 0.4, -np.pi + 0.01])
    r = regression_residuals({"phi": pred}, {"phi": true})["phi"]
    assert r == pytest.approx([2 * np.pi - 6.2, 6.2 - 2 * np.pi, -0.1, 0.02])
    assert np.all((r >= -np.pi) & (r < np.pi))


def test_robust_width_ignores_outliers_and_pulls_of_calibrated_errors_have_unit_width():
    rng = np.random.default_rng(0)
    core = rng.normal(0.0, 0.01, 20000)
    tails = np.r_[core, np.full(200, 5.0)]  # 1% wildly wrong
    s = residual_summary(tails)
    assert s["width"] == pytest.approx(0.01, rel=0.05) and s["std"] > 0.3
    sigma = rng.uniform(0.5, 2.0, 20000)
    p = residual_summary(pulls(rng.normal(0.0, sigma), sigma))
    assert p["width"] == pytest.approx(1.0, rel=0.05) and abs(p["mean"]) < 0.05
    assert np.isnan(residual_summary(np.array([]))["width"])
