"""Rates binned in a particle or track variable (efficiency and fake rate versus pT, eta, phi).

# B batch, N constituents (hits), Q predicted objects (tracks), T true objects (particles).

``track_table`` flattens the matching outcome of a batch into one row per target particle, one row per
predicted track and one row per double-majority (track, target particle) pair; ``binned_rate`` turns a
boolean column and a value column into a rate per bin with its uncertainty. Definitions: docs/metrics.md.
"""

import numpy as np
from scipy.stats import beta
from torch import Tensor

from hepattn.metrics.reco import counts_from_flags, track_flags

ONE_SIGMA = 0.6826894921370859  # central probability of a Gaussian +- 1 sigma interval


def _array(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def _gather(table: np.ndarray, index: np.ndarray, fill) -> np.ndarray:
    """table[b, index[b, q]] for (B, T) ``table`` and (B, Q) ``index``; index -1 gives ``fill``."""
    padded = np.concatenate([table, np.full((table.shape[0], 1), fill, dtype=table.dtype)], axis=1)
    return np.take_along_axis(padded, np.where(index >= 0, index, table.shape[1]), axis=1)


def track_table(
    pred_valid: Tensor,
    pred_mask: Tensor,
    true_valid: Tensor,
    true_mask: Tensor,
    hit_valid: Tensor,
    particle_params: dict[str, Tensor | np.ndarray],
    track_params: dict[str, Tensor | np.ndarray],
    target: Tensor | None = None,
) -> dict:
    """Counts and per-object rows of a batch, to bin efficiencies and fake rates.

    The first five arguments and ``target`` are those of ``metrics.reco.track_counts``.

    Args:
        pred_valid: (B, Q) tracks the model calls real.
        pred_mask: (B, Q, N) hits assigned to each track.
        true_valid: (B, T) real particles.
        true_mask: (B, T, N) hits of each particle.
        hit_valid: (B, N) real hits.
        particle_params: true parameters of the particles, e.g. ``{"pt": (B, T), "eta": ..., "phi": ...}``.
        track_params: predicted parameters of the tracks, (B, Q) each; the keys of ``particle_params``
            that are also here are used for the track rows and the matches.
        target: (B, T) particles that count in the efficiency denominator; default all valid particles.

    Returns:
        ``counts``: the integer counts of ``track_counts``. ``particles``: one row per target particle,
        its parameters and the booleans ``dm``, ``perfect`` and ``lhc`` (found or not). ``tracks``: one
        row per counted track (valid, with at least one hit), the booleans ``fake`` and ``duplicate``,
        and for every shared key the parameter of the particle holding the majority of its hits, or the
        track's own predicted value when it is fake (no such particle), and ``reco_{key}``, the track's
        predicted value. ``matches``: one row per track
        that DM-matches a target particle, ``pred_{key}`` and ``true_{key}`` for every shared key. Every
        column is a flat numpy array; rows of all events of the batch are concatenated.
    """
    flags = track_flags(pred_valid, pred_mask, true_valid, true_mask, hit_valid, target)
    f = {k: _array(v) for k, v in flags.items()}
    true_p = {k: _array(v) for k, v in particle_params.items()}
    pred_p = {k: _array(v) for k, v in track_params.items() if k in true_p}
    target_rows = f["particle_target"]
    particles = {k: v[target_rows] for k, v in true_p.items()}
    particles |= {name: f[f"particle_{name}"][target_rows] for name in ("dm", "perfect", "lhc")}

    rows, owner = f["track_valid"], f["track_particle"]
    tracks = {k: np.where(owner >= 0, _gather(true_p[k], owner, 0), v)[rows] for k, v in pred_p.items()}
    tracks |= {f"reco_{k}": v[rows] for k, v in pred_p.items()}
    tracks |= {"fake": f["track_fake"][rows], "duplicate": f["track_duplicate"][rows]}

    dm = f["track_dm_particle"]
    matched = _gather(f["particle_target"], dm, False)  # False where the track DM-matches nothing
    matches = {}
    for k, v in pred_p.items():
        matches[f"pred_{k}"] = v[matched]
        matches[f"true_{k}"] = _gather(true_p[k], dm, 0)[matched]
    return {
        "counts": counts_from_flags(flags),
        "particles": particles,
        "tracks": tracks,
        "matches": matches,
    }


def concat_tables(tables: list[dict]) -> dict:
    """Merge the ``track_table`` outputs of several batches: counts summed, rows concatenated."""
    merged: dict = {"counts": {k: sum(t["counts"][k] for t in tables) for k in tables[0]["counts"]}}
    for part in ("particles", "tracks", "matches"):
        merged[part] = {k: np.concatenate([t[part][k] for t in tables]) for k in tables[0][part]}
    return merged


def binned_rate(
    passed: np.ndarray | Tensor,
    values: np.ndarray | Tensor,
    bins: np.ndarray,
    interval: str = "clopper-pearson",
    log: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fraction of entries passing in each bin of ``values``, with a 68.3% uncertainty.

    Args:
        passed: (M,) booleans, e.g. ``track_table(...)["particles"]["dm"]``.
        values: (M,) the binned variable, e.g. the particle pT; entries outside the bins are dropped.
        bins: (K + 1,) increasing bin edges; a bin holds lo <= value < hi, the last one includes its edge.
        interval: ``"clopper-pearson"`` (exact binomial interval, never outside [0, 1] and not empty
            for a rate of 0 or 1) or ``"binomial"`` (symmetric sqrt(rate (1 - rate) / n)).
        log: return geometric bin centres (for a logarithmic axis, e.g. pT).

    Returns:
        ``centres`` (K,), ``rate`` (K,), ``error`` (2, K) distances below and above the rate (the form
        ``Axes.errorbar`` takes as ``yerr``) and ``counts`` (K,) entries per bin. Empty bins have a NaN
        rate and error.
    """
    passed, values, bins = _array(passed).astype(bool), _array(values).astype(float), np.asarray(bins, float)
    index = np.searchsorted(bins, values, side="right") - 1
    index[values == bins[-1]] = len(bins) - 2
    inside = (index >= 0) & (index < len(bins) - 1)
    counts = np.bincount(index[inside], minlength=len(bins) - 1)
    k = np.bincount(index[inside][passed[inside]], minlength=len(bins) - 1)
    n = np.where(counts > 0, counts, np.nan)
    rate = k / n
    if interval == "clopper-pearson":
        tail = (1 - ONE_SIGMA) / 2
        with np.errstate(invalid="ignore"):
            lo = np.where(k > 0, beta.ppf(tail, k, n - k + 1), 0.0)
            hi = np.where(k < counts, beta.ppf(1 - tail, k + 1, n - k), 1.0)
        error = np.stack([rate - lo, hi - rate]) * np.where(counts > 0, 1.0, np.nan)
    elif interval == "binomial":
        sigma = np.sqrt(rate * (1 - rate) / n)
        error = np.stack([sigma, sigma])
    else:
        raise ValueError(f"unknown interval {interval!r}: use 'clopper-pearson' or 'binomial'")
    centres = np.sqrt(bins[:-1] * bins[1:]) if log else (bins[:-1] + bins[1:]) / 2
    return centres, rate, error, counts
