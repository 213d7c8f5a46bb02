"""Hit-filter metrics on per-hit arrays (one event, or several concatenated).

A hit is positive (``label`` True) when it belongs to a target (reconstructable) particle, and kept when
its filter score is at or above the threshold. Definitions: docs/metrics.md.
"""

import numpy as np
from scipy.stats import rankdata


def _bool(x) -> np.ndarray:
    return np.asarray(x).astype(bool)


def roc_auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random negative.

    Computed from ranks (Mann-Whitney U), with tied scores sharing their average rank, so that a tied
    (positive, negative) pair counts one half. NaN when either class is empty.

    Args:
        score: (N,) filter scores (any monotonic scale: probabilities or logits).
        label: (N,) True for positive hits.
    """
    score, label = np.asarray(score, dtype=np.float64), _bool(label)
    pos, neg = int(label.sum()), int((~label).sum())
    if not pos or not neg:
        return float("nan")
    rank_sum = rankdata(score)[label].sum()
    return float((rank_sum - pos * (pos + 1) / 2) / (pos * neg))


def filter_metrics(score: np.ndarray, label: np.ndarray, threshold: float) -> dict[str, float]:
    """Hit efficiency, hit purity and ROC AUC of a filter cut.

    Args:
        score: (N,) filter scores.
        label: (N,) True for hits of target particles.
        threshold: a hit is kept when ``score >= threshold``.

    Returns:
        ``hit_efficiency`` (kept positives / positives), ``hit_purity`` (kept positives / kept hits),
        ``kept_fraction`` (kept / all hits) and ``roc_auc``, as floats; a ratio with an empty denominator
        is NaN.
    """
    score, label = np.asarray(score, dtype=np.float64), _bool(label)
    kept = score >= threshold
    kept_pos = int((kept & label).sum())
    return {
        "hit_efficiency": _ratio(kept_pos, int(label.sum())),
        "hit_purity": _ratio(kept_pos, int(kept.sum())),
        "kept_fraction": _ratio(int(kept.sum()), len(kept)),
        "roc_auc": roc_auc(score, label),
    }


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def roc_curve(score: np.ndarray, label: np.ndarray, max_points: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Points of the ROC curve, from keeping nothing (0, 0) to keeping everything (1, 1).

    One point per distinct score (tied hits enter together), thinned to at most ``max_points`` evenly
    spaced in cut order; the first and last points are always kept.

    Args:
        score: (N,) filter scores.
        label: (N,) True for positive hits.
        max_points: most points returned (at least 2).

    Returns:
        False positive rate (negatives kept / negatives) and true positive rate (positives kept /
        positives), both increasing. A rate with no hits of its class is 0 throughout.
    """
    score, label = np.asarray(score, dtype=np.float64), _bool(label)
    order = np.argsort(-score, kind="stable")
    score, label = score[order], label[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(score) != 0), len(score) - 1] if len(score) else []
    tp = np.r_[0, np.cumsum(label)[last_of_value]]
    fp = np.r_[0, np.cumsum(~label)[last_of_value]]
    if len(tp) > max_points:
        pick = np.unique(np.linspace(0, len(tp) - 1, max(max_points, 2)).round().astype(int))
        tp, fp = tp[pick], fp[pick]
    return fp / max(int((~label).sum()), 1), tp / max(int(label.sum()), 1)


def retention_counts(
    keep: np.ndarray, hit_particle: np.ndarray, target: np.ndarray, min_hits: int = 3
) -> dict[str, int]:
    """Count target particles that keep at least ``min_hits`` hits after the filter (one event).

    Args:
        keep: (N,) True for hits the filter keeps.
        hit_particle: (N,) index of each hit's particle in the particle table, -1 for noise.
        target: the target particles, as a (P,) boolean mask over the particle table or as indices.
        min_hits: hits a particle needs to stay reconstructable (the target definition's hit cut).

    Returns:
        ``particles`` (targets) and ``retained`` (targets with >= ``min_hits`` kept hits); sum them over
        events and pass them to ``retention_rate``.
    """
    keep, owner, target = _bool(keep), np.asarray(hit_particle), np.asarray(target)
    index = np.flatnonzero(target) if target.dtype == bool else target.astype(np.int64)
    kept_owner = owner[keep & (owner >= 0)]
    size = max(len(target) if target.dtype == bool else 0, int(index.max(initial=-1)) + 1)
    kept_hits = np.bincount(kept_owner[kept_owner < size], minlength=size)
    return {"particles": len(index), "retained": int((kept_hits[index] >= min_hits).sum())}


def retention_rate(counts: dict[str, int]) -> float:
    """Fraction of target particles retained by the filter (NaN without targets)."""
    return _ratio(counts["retained"], counts["particles"])


def particle_retention(
    keep: np.ndarray, hit_particle: np.ndarray, target: np.ndarray, min_hits: int = 3
) -> float:
    """``retention_rate(retention_counts(...))`` for one event; see ``retention_counts``."""
    return retention_rate(retention_counts(keep, hit_particle, target, min_hits))
