"""Turning the tracker's raw outputs into tracks: each hit on at most one track.

The tracker proposes one candidate per kept hit, with a validity probability and a mask over the hits;
a mask keeps at most one hit per detector module (``one_hit_per_module``). Candidates are ordered
(``ranking_score``), duplicates suppressed on their hit sets (``suppress_duplicates``), hits assigned
to the kept candidate that claims them most strongly (``assign_hits``), pieces of one particle joined
and free hits added to the tracks they extend (``mend``), and the tracks checked against
a helix through the beam line: short ones that fit none are dropped (``drop_unfit_tracks``), longer
ones may lose a few stray hits (``refine_tracks``), and candidates left unused make tracks of the hits
left over (``recover_tracks``).
"""

import numpy as np
import torch

from hepattn.experiments.trackml.helix import helix_residuals, mask_helix_residuals, set_helix_residuals


def hit_lists(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The hits of each row of ``mask`` (R, N) as (row, hit) pairs on the CPU, and where each row starts.

    Row i holds ``hit[bounds[i]:bounds[i + 1]]``; ``row`` is sorted, for fits over the pairs
    (``set_helix_residuals``).
    """
    row, hit = mask.cpu().nonzero(as_tuple=True)
    return row, hit, np.searchsorted(row.numpy(), np.arange(mask.shape[0] + 1))


def one_hit_per_module(logit: torch.Tensor, module: torch.Tensor) -> torch.Tensor:
    """(Q, N) ``logit`` with each row's claims (logit > 0) on all but its strongest hit per module withdrawn.

    A charged particle crosses a detector module once and leaves at most one hit on it, so a mask that
    holds two hits of one module has merged two particles (in a jet core, neighbours cross the same
    modules); the weaker claims are set to -inf, so the hit is free for the track it belongs to. The
    same rule as a combinatorial Kalman filter's, which takes at most one measurement per surface
    (ACTS, arXiv 2106.13593).

    Args:
        logit: (Q, N) track-hit mask logits.
        module: (N,) an integer per hit naming its module (``dataset.module_key``).
    """
    row, hit = (logit > 0).nonzero(as_tuple=True)
    if not len(row):
        return logit
    value = logit[row, hit]
    pairs, group = torch.unique(row * (int(module.max()) + 1) + module[hit], return_inverse=True)
    best = torch.full((len(pairs),), -torch.inf, dtype=value.dtype, device=value.device)
    best = best.scatter_reduce(0, group, value, "amax")
    weaker = value < best[group]
    out = logit.clone()
    out[row[weaker], hit[weaker]] = -torch.inf
    return out


def suppress_duplicates(score: torch.Tensor, mask: torch.Tensor, max_overlap: float) -> torch.Tensor:
    """(Q,) tracks to keep: non-maximum suppression on hit sets.

    Greedily by score, a track whose hits are already claimed by kept tracks for more than
    ``max_overlap`` of its hits is a duplicate and dropped.

    Args:
        score: (Q,) the order (highest first), e.g. validity or ``ranking_score``; tracks with a
            negative score are never kept.
        mask: (Q, N) hits of each track.
        max_overlap: largest fraction of a kept track's hits that earlier kept tracks may hold.
    """
    order = torch.argsort(score, descending=True)
    order = order[score[order] >= 0].cpu().numpy()
    _, hit, bounds = hit_lists(mask[order])
    hit = hit.numpy()
    keep = np.zeros(len(score), dtype=bool)
    claimed = np.zeros(mask.shape[-1], dtype=bool)
    for i, q in enumerate(order):
        hits = hit[bounds[i] : bounds[i + 1]]
        if len(hits) and claimed[hits].sum() <= max_overlap * len(hits):
            keep[q] = True
            claimed[hits] = True
    return torch.from_numpy(keep).to(score.device)


def assign_hits(
    logit: torch.Tensor, keep: torch.Tensor, min_hits: int = 1, min_mask_prob: float = 0.0
) -> np.ndarray:
    """(N,) for each hit the kept track that claims it most strongly (logit > 0), else -1.

    Args:
        logit: (Q, N) track-hit mask logits.
        keep: (Q,) tracks that survived selection and duplicate suppression.
        min_hits: a track left with fewer hits than this gives them up (they become -1).
        min_mask_prob: so does a track whose mean mask probability over its hits is lower (the mask
            score of Mask2Former's inference, arXiv 2112.01527: an unsure mask is an impure track).
    """
    rows = keep.nonzero().squeeze(1)
    if not len(rows):
        return np.full(logit.shape[-1], -1, dtype=np.int64)
    best, owner = logit[rows].max(dim=0)  # over the kept tracks only
    owner = torch.where(best > 0, rows[owner], -1).cpu().numpy()
    claimed = owner >= 0
    size = np.bincount(owner[claimed], minlength=logit.shape[0])
    prob = torch.sigmoid(best.float()).cpu().numpy()
    total = np.bincount(owner[claimed], weights=prob[claimed], minlength=logit.shape[0])
    mean_prob = total / np.maximum(size, 1)
    good = (size >= min_hits) & (mean_prob >= min_mask_prob)
    return np.where(claimed & good[owner.clip(0)], owner, -1)


def ranking_score(
    prob: torch.Tensor,
    quality: torch.Tensor | None,
    mask: torch.Tensor,
    candidate: torch.Tensor,
    xyz: np.ndarray,
    fit_xy: float = 0.0,
    fit_z: float = 0.0,
) -> torch.Tensor:
    """(Q,) the order in which ``suppress_duplicates`` considers the candidates; -1 for non-candidates.

    Every seed of a particle gets the same validity target, so validity alone cannot tell a clean mask
    from one that merged two particles: the first of them kept claims the hits of both. The score is
    validity times the predicted mask quality (the mask task's IoU head, when it has one), plus 1 for a
    candidate whose mask holds at least 3 hits that fit a helix through the beam line
    (``mask_helix_residuals`` below ``fit_xy`` and ``fit_z`` mm), so candidates that fit come first and
    the others stay as fall-backs for hits nothing else claims.

    Args:
        prob: (Q,) validity probability.
        quality: (Q,) predicted mask IoU, or None.
        mask: (Q, N) hits of each candidate.
        candidate: (Q,) the queries that may become tracks.
        xyz: (N, 3) hit positions in mm.
        fit_xy: largest x-y residual (mm) of a fitting mask; 0: no fit.
        fit_z: largest z residual (mm) of a fitting mask.
    """
    score = prob if quality is None else prob * quality
    if fit_xy:
        rows = candidate.nonzero().squeeze(1)
        xy, z = mask_helix_residuals(mask[rows], xyz)
        score = score.clone()
        score[rows] += ((xy < fit_xy) & (z < fit_z)).to(score.dtype)
    return score.masked_fill(~candidate, -1.0)


def drop_unfit_tracks(
    owner: np.ndarray, xyz: np.ndarray, max_hits: int, max_xy: float, max_z: float
) -> np.ndarray:
    """``owner`` (N,) with the hits of short tracks that fit no helix (``helix_residuals``) set to -1.

    Args:
        owner: (N,) track of each hit, -1 for none.
        xyz: (N, 3) hit positions in mm.
        max_hits: only tracks with at most this many hits are checked (long tracks are rarely merged).
        max_xy: largest allowed x-y residual in mm.
        max_z: largest allowed z residual in mm.
    """
    out = owner.copy()
    tracks, size = np.unique(owner[owner >= 0], return_counts=True)
    for track in tracks[size <= max_hits]:
        hits = owner == track
        xy, z = helix_residuals(*xyz[hits].astype(np.float64).T)
        if xy >= max_xy or z >= max_z:
            out[hits] = -1
    return out


def refine_tracks(
    owner: np.ndarray, xyz: np.ndarray, max_xy: float, max_z: float, max_removed: int, min_hits: int = 3
) -> np.ndarray:
    """``owner`` (N,) with at most ``max_removed`` hits taken off each track that fits no helix.

    A track of more than ``min_hits`` (at least 3) hits whose hits miss a helix through the beam line
    (``helix_residuals`` at least ``max_xy`` or ``max_z`` mm) loses, one at a time, the hit without
    which the others fit best, until they fit, ``max_removed`` hits are off or ``min_hits`` are left.
    If the rest then fits, the removed hits become unassigned (-1); if not, the track is a merge that a
    few hits do not explain, and it stays as it was. A stray hit of another particle can turn a track
    into a fake (a 4-hit track with 2 + 2 hits) and always costs purity; the stray hit drags the fit
    towards itself, so its own residual need not be the largest: the leave-one-out choice finds it.
    Each round fits every track still being refined, with and without each of its hits, at once.
    """
    out = owner.copy()
    floor = max(3, min_hits)
    tracks = np.unique(owner[owner >= 0])
    active = [(np.flatnonzero(owner == t), []) for t in tracks]  # (hits left, hits removed)
    while active:
        # per track: its leave-one-out sets while it may still lose a hit, then all its hits left
        counts = [
            len(left) + 1 if len(left) > floor and len(removed) < max_removed else 1
            for left, removed in active
        ]
        rows, hits, first = [], [], 0
        for (left, _), sets in zip(active, counts, strict=True):
            n = len(left)
            position = np.tile(np.arange(n), sets)
            row = np.repeat(np.arange(sets), n)
            keep = (position != row) | (row == sets - 1)  # set i < n leaves hit i out
            rows.append(first + row[keep])
            hits.append(left[position[keep]])
            first += sets
        xy, z = set_helix_residuals(
            torch.from_numpy(np.concatenate(rows)), torch.from_numpy(np.concatenate(hits)), first, xyz
        )
        misfit = torch.maximum(xy / max_xy, z / max_z).numpy()
        following, first = [], 0
        for (left, removed), sets in zip(active, counts, strict=True):
            fit = misfit[first : first + sets]
            first += sets
            if fit[-1] < 1.0:  # the hits left fit: those removed are strays
                out[removed] = -1
            elif sets > 1:
                worst = int(fit[:-1].argmin())  # the hit without which the others fit best
                following.append((np.delete(left, worst), [*removed, left[worst]]))
        active = following
    return out


def recover_tracks(
    owner: np.ndarray,
    mask: torch.Tensor,
    score: torch.Tensor,
    xyz: np.ndarray,
    max_xy: float,
    max_z: float,
    min_hits: int = 3,
) -> np.ndarray:
    """``owner`` (N,) with tracks made of hits that no track holds, from the candidates not yet used.

    After duplicate suppression, assignment, ``drop_unfit_tracks`` and ``refine_tracks``, some hits
    are unassigned: the candidate that held them lost the duplicate suppression to a merge, or gave
    them up. In ``score`` order (highest first, negative never), each candidate that owns no hits
    becomes a track of its mask's unassigned hits when there are at least ``min_hits`` (at least 3)
    of them and they fit a helix through the beam line (``set_helix_residuals`` below ``max_xy`` and
    ``max_z`` mm); those hits are then taken.

    Args:
        owner: (N,) track (query index) of each hit, -1 for none.
        mask: (Q, N) hits of each candidate.
        score: (Q,) the candidates' order, e.g. ``ranking_score``.
        xyz: (N, 3) hit positions in mm.
        max_xy: largest x-y residual (mm) of a recovered track.
        max_z: largest z residual (mm) of a recovered track.
        min_hits: fewest unassigned hits a candidate needs (at least 3).
    """
    out = owner.copy()
    mask, score = mask.cpu(), score.cpu()
    free = torch.from_numpy(owner < 0)
    need = max(3, min_hits)
    unused = torch.ones_like(score, dtype=torch.bool)
    unused[torch.from_numpy(np.unique(owner[owner >= 0]))] = False
    rows = ((score >= 0) & unused).nonzero().squeeze(1)
    rows = rows[torch.argsort(score[rows], descending=True)]
    row, hit, bounds = hit_lists(mask[rows] & free)
    xy, z = set_helix_residuals(row, hit, len(rows), xyz)  # all at once; refitted where others took hits
    hit, free = hit.numpy(), free.numpy()
    for i, q in enumerate(rows.tolist()):
        hits = hit[bounds[i] : bounds[i + 1]]
        left = hits[free[hits]]
        if len(left) < need:
            continue
        if len(left) < len(hits):
            one = torch.from_numpy(left)
            xy[i], z[i] = (r[0] for r in set_helix_residuals(torch.zeros_like(one), one, 1, xyz))
        if xy[i] < max_xy and z[i] < max_z:
            out[left] = q
            free[left] = False
    return out
