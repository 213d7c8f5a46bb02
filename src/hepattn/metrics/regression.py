"""Track-parameter residuals (and pulls) on matched (track, particle) pairs.

The pairs are the double-majority matches of target particles, e.g. ``metrics.binned.track_table(...)
["matches"]`` split into its ``pred_*`` and ``true_*`` columns. Definitions: docs/metrics.md.

The tracker regresses values only (no uncertainty head yet), so pulls are not reported; ``pulls`` is
here for when a predicted sigma exists.
"""

import numpy as np

from hepattn.data.kinematics import wrap_phi

RELATIVE = ("pt",)  # residual (pred - true) / true
ANGLES = ("phi",)  # residual wrapped into [-pi, pi)


def regression_residuals(pred: dict[str, np.ndarray], true: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Residual of every field present in both ``pred`` and ``true`` (same order as ``pred``).

    Args:
        pred: predicted values, e.g. ``{"pt": (M,), "eta": (M,), "phi": (M,), "vz": (M,)}``.
        true: true values of the matched particles, same keys and shapes.

    Returns:
        (M,) residuals: ``(pred - true) / true`` for pT, ``pred - true`` wrapped into [-pi, pi) for phi,
        and ``pred - true`` for anything else (eta, vz [mm], ...).
    """
    out = {}
    for key in (k for k in pred if k in true):
        p, t = np.asarray(pred[key], dtype=np.float64), np.asarray(true[key], dtype=np.float64)
        if key in RELATIVE:
            out[key] = (p - t) / t
        elif key in ANGLES:
            out[key] = wrap_phi(p - t)
        else:
            out[key] = p - t
    return out


def residual_summary(residual: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation, median and robust width of one residual array.

    The robust width is half the 16%-84% quantile range: the standard deviation of a Gaussian, but
    insensitive to tails (a few badly reconstructed tracks). All NaN when the array is empty.

    Returns:
        ``count``, ``mean``, ``std``, ``median`` and ``width`` as floats.
    """
    r = np.asarray(residual, dtype=np.float64)
    if not len(r):
        return {"count": 0, "mean": np.nan, "std": np.nan, "median": np.nan, "width": np.nan}
    q16, q50, q84 = np.quantile(r, [0.16, 0.5, 0.84])
    return {
        "count": len(r),
        "mean": float(r.mean()),
        "std": float(r.std()),
        "median": float(q50),
        "width": float((q84 - q16) / 2),
    }


def residual_summaries(residuals: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """``residual_summary`` of every field of ``regression_residuals``."""
    return {key: residual_summary(r) for key, r in residuals.items()}


def pulls(residual: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Residual over its predicted uncertainty; a calibrated regression gives mean 0 and width 1.

    ``residual`` and ``sigma`` must be in the same units: for the relative pT residual pass
    sigma(pT) / true pT. Not reported yet, because the tracker has no uncertainty head.
    """
    return np.asarray(residual, dtype=np.float64) / np.asarray(sigma, dtype=np.float64)
