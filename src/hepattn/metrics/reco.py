"""Reconstruction metrics on predictions and targets (pure functions, no framework).

# B batch, N constituents (hits), Q predicted objects (tracks), T true objects (particles).

Track matching definitions (see also docs/metrics.md once the tracking experiment lands):
- purity(q, t) = |hits(q) & hits(t)| / |hits(q)|; completeness(q, t) = |hits(q) & hits(t)| / |hits(t)|.
- A particle is found with double majority (DM) if a predicted track has purity > 0.5 and
  completeness > 0.5 for it; perfectly if a track has exactly its hits; LHC-style if a track has
  purity > 0.75 for it.
- A predicted track is fake if it has purity <= 0.5 for every true particle; it is a duplicate if it
  DM-matches a particle that another predicted track also DM-matches (all but one count).
"""

import numpy as np
import torch
from torch import Tensor


def _overlaps(pred_mask: Tensor, true_mask: Tensor, hit_valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    pred = (pred_mask & hit_valid.unsqueeze(1)).float()
    true = (true_mask & hit_valid.unsqueeze(1)).float()
    overlap = torch.einsum("bqn,btn->bqt", pred, true)
    return overlap, pred.sum(-1), true.sum(-1)


@torch.no_grad()
def track_counts(
    pred_valid: Tensor,
    pred_mask: Tensor,
    true_valid: Tensor,
    true_mask: Tensor,
    hit_valid: Tensor,
    target: Tensor | None = None,
) -> dict[str, int]:
    """Count found particles, fakes and duplicates in a batch.

    Args:
        pred_valid: (B, Q) tracks the model calls real.
        pred_mask: (B, Q, N) hits assigned to each track.
        true_valid: (B, T) real particles (all of them, for the fake definition).
        true_mask: (B, T, N) hits of each particle.
        hit_valid: (B, N) real hits.
        target: (B, T) particles that count in the efficiency denominator (e.g. pT > 1 GeV);
            default all valid particles.

    Returns:
        Integer counts; ``track_rates`` turns summed counts into fractions.
    """
    target = true_valid if target is None else target & true_valid
    overlap, n_pred, n_true = _overlaps(pred_mask, true_mask, hit_valid)
    pair = pred_valid.unsqueeze(-1) & true_valid.unsqueeze(1) & (n_pred.unsqueeze(-1) > 0)
    purity = overlap / n_pred.clamp_min(1).unsqueeze(-1)
    completeness = overlap / n_true.clamp_min(1).unsqueeze(1)
    dm = pair & (purity > 0.5) & (completeness > 0.5)
    perfect = pair & (overlap == n_pred.unsqueeze(-1)) & (overlap == n_true.unsqueeze(1))
    lhc = pair & (purity > 0.75)
    tracks = pred_valid & (n_pred > 0)
    dm_per_particle = dm.sum(1)  # (B, T) tracks DM-matched to each particle
    return {
        "particles": int(target.sum()),
        "dm_found": int((dm.any(1) & target).sum()),
        "perfect_found": int((perfect.any(1) & target).sum()),
        "lhc_found": int((lhc.any(1) & target).sum()),
        "tracks": int(tracks.sum()),
        "fake_tracks": int((tracks & ~(pair & (purity > 0.5)).any(-1)).sum()),
        "duplicate_tracks": int((dm_per_particle - 1).clamp_min(0).sum()),
    }


def track_rates(counts: dict[str, int]) -> dict[str, float]:
    """Efficiencies (per target particle) and fake/duplicate rates (per predicted track)."""
    particles, tracks = max(counts["particles"], 1), max(counts["tracks"], 1)
    return {
        "dm_efficiency": counts["dm_found"] / particles,
        "perfect_efficiency": counts["perfect_found"] / particles,
        "lhc_efficiency": counts["lhc_found"] / particles,
        "fake_rate": counts["fake_tracks"] / tracks,
        "duplicate_rate": counts["duplicate_tracks"] / tracks,
    }


def trackml_score(hit_track: np.ndarray, hit_particle: np.ndarray, hit_weight: np.ndarray) -> float:
    """The TrackML challenge score of one event (arXiv 1904.06778, section 3).

    A (track, particle) pair counts when more than half of the track's hits belong to the particle
    and more than half of the particle's hits are on the track; the score is the summed truth
    weight of the hits they share. Weights are normalised so that a perfect event scores 1; noise
    hits have weight 0.

    Args:
        hit_track: (N,) reconstructed track id of every hit of the event (any integers).
        hit_particle: (N,) true particle id of every hit (0 for noise).
        hit_weight: (N,) per-hit truth weights.
    """
    hit_track, hit_particle = np.asarray(hit_track), np.asarray(hit_particle)
    weight = np.asarray(hit_weight, dtype=np.float64)
    total = weight.sum()
    if total <= 0:
        raise ValueError("the event's truth weights sum to zero; the score is undefined")
    _, track = np.unique(hit_track, return_inverse=True)
    _, particle = np.unique(hit_particle, return_inverse=True)
    track_size, particle_size = np.bincount(track), np.bincount(particle)
    pair = track.astype(np.int64) * (particle.max() + 1) + particle
    pairs, pair_index, shared = np.unique(pair, return_inverse=True, return_counts=True)
    pair_track, pair_particle = pairs // (particle.max() + 1), pairs % (particle.max() + 1)
    good = (2 * shared > track_size[pair_track]) & (2 * shared > particle_size[pair_particle])
    return float(weight[good[pair_index]].sum() / total)
