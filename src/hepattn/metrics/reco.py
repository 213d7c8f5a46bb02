"""Reconstruction metrics on predictions and targets (pure functions, no framework).

# B batch, N constituents (hits), Q predicted objects (tracks), T true objects (particles).

Track matching definitions (full list: docs/metrics.md):
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


def _first_true(m: Tensor) -> Tensor:
    """Index of the first True along the last dimension, -1 where there is none (also when it is empty)."""
    padded = torch.cat([m, m.new_ones(*m.shape[:-1], 1)], -1).long()
    first = padded.argmax(-1)  # the first maximum; the padding column when there is no True
    return torch.where(first < m.shape[-1], first, -1)


@torch.no_grad()
def track_flags(
    pred_valid: Tensor,
    pred_mask: Tensor,
    true_valid: Tensor,
    true_mask: Tensor,
    hit_valid: Tensor,
    target: Tensor | None = None,
) -> dict[str, Tensor]:
    """Per-particle and per-track outcome of the matching, for rates binned in pT, eta or phi.

    Args:
        pred_valid: (B, Q) tracks the model calls real.
        pred_mask: (B, Q, N) hits assigned to each track.
        true_valid: (B, T) real particles (all of them, for the fake definition).
        true_mask: (B, T, N) hits of each particle.
        hit_valid: (B, N) real hits.
        target: (B, T) particles that count in the efficiency denominator (e.g. pT > 1 GeV);
            default all valid particles.

    Returns:
        Boolean tensors ``particle_target``, ``particle_dm``, ``particle_perfect``, ``particle_lhc``
        (B, T), where the found flags are False for non-target particles; ``track_valid`` (B, Q): valid
        tracks with at least one hit (the rate denominator), ``track_fake`` and ``track_duplicate``
        (B, Q), False for tracks that are not counted; and integer (B, Q) indices into the particles:
        ``track_particle``, the particle holding more than half of the track's hits (-1 when there is
        none, i.e. the track is fake), and ``track_dm_particle``, the particle the track DM-matches (-1
        when none). A particle DM-matched by k tracks gives k - 1 duplicates: every one but the track
        sharing most hits with it (the lowest index among equals).
    """
    target = true_valid if target is None else target & true_valid
    overlap, n_pred, n_true = _overlaps(pred_mask, true_mask, hit_valid)
    pair = pred_valid.unsqueeze(-1) & true_valid.unsqueeze(1) & (n_pred.unsqueeze(-1) > 0)
    purity = overlap / n_pred.clamp_min(1).unsqueeze(-1)
    completeness = overlap / n_true.clamp_min(1).unsqueeze(1)
    majority = pair & (purity > 0.5)  # at most one particle per track
    dm = majority & (completeness > 0.5)
    perfect = pair & (overlap == n_pred.unsqueeze(-1)) & (overlap == n_true.unsqueeze(1))
    lhc = pair & (purity > 0.75)
    tracks = pred_valid & (n_pred > 0)
    # the primary DM track of each particle shares most hits (the first of equals); a padding track
    # with no hit keeps argmax defined when there are no tracks
    shared = torch.where(dm, overlap, -1.0)
    shared = torch.cat([shared, shared.new_full((shared.shape[0], 1, shared.shape[2]), -1.0)], 1)
    primary = torch.zeros_like(shared, dtype=torch.bool).scatter_(1, shared.argmax(1, keepdim=True), True)
    return {
        "particle_target": target,
        "particle_dm": dm.any(1) & target,
        "particle_perfect": perfect.any(1) & target,
        "particle_lhc": lhc.any(1) & target,
        "track_valid": tracks,
        "track_fake": tracks & ~majority.any(-1),
        "track_duplicate": (dm & ~primary[:, :-1]).any(-1),
        "track_particle": _first_true(majority),
        "track_dm_particle": _first_true(dm),
    }


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
    return counts_from_flags(track_flags(pred_valid, pred_mask, true_valid, true_mask, hit_valid, target))


def counts_from_flags(flags: dict[str, Tensor]) -> dict[str, int]:
    """The integer counts of ``track_counts`` from the per-object flags of ``track_flags``."""
    names = {
        "particles": "particle_target",
        "dm_found": "particle_dm",
        "perfect_found": "particle_perfect",
        "lhc_found": "particle_lhc",
        "tracks": "track_valid",
        "fake_tracks": "track_fake",
        "duplicate_tracks": "track_duplicate",
    }
    return {name: int(flags[key].sum()) for name, key in names.items()}


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
