"""Turning the tracker's raw outputs into tracks: each hit on at most one track.

The tracker proposes one candidate per kept hit, with a validity probability and a mask over the hits;
a mask keeps at most one hit per detector module (``one_hit_per_module``). Candidates are ordered
(``ranking_score``), duplicates suppressed on their hit sets (``suppress_duplicates``), hits assigned
to the kept candidate that claims them most strongly (``assign_hits``), pieces of one particle joined
(``join_fragments``) and hits no track holds added to the tracks they extend (``extend_tracks``), both
by helix fits, and the tracks checked against
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


def join_fragments(
    owner: np.ndarray,
    xyz: np.ndarray,
    module: np.ndarray,
    max_hits: int,
    max_xy: float,
    max_z: float,
    max_dphi: float = 0.05,
) -> np.ndarray:
    """``owner`` (N,) with pairs of short tracks that are two pieces of one particle joined.

    In a jet core, neighbouring particles cross the same modules, and the tracker's masks can split
    each of them into an inner and an outer piece (e.g. hits at r = 32, 71, 73 mm on one track and
    115, 171, 173 mm on another): no piece holds more than half of its particle's hits. Two tracks of at
    most ``max_hits`` hits each, on no common module, whose mean phi differ by less than ``max_dphi``,
    become one when their hits together fit a helix through the beam line (``set_helix_residuals``
    below ``max_xy`` and ``max_z`` mm); the best-fitting pairs are joined first, each track once.
    The same test a combinatorial track finder applies when it extends a segment with the hits of the
    next layers (ACTS, arXiv 2106.13593).

    Args:
        owner: (N,) track of each hit, -1 for none.
        xyz: (N, 3) hit positions in mm.
        module: (N,) an integer per hit naming its module (``dataset.module_key``).
        max_hits: only tracks with at most this many hits are pieces.
        max_xy: largest x-y residual (mm) of the joined track.
        max_z: largest z residual (mm) of the joined track.
        max_dphi: largest difference of the pieces' mean phi (radians).
    """
    tracks, size = np.unique(owner[owner >= 0], return_counts=True)
    pieces = tracks[size <= max_hits]
    if len(pieces) < 2:
        return owner
    hit = np.flatnonzero(np.isin(owner, pieces))
    hit = hit[np.argsort(owner[hit], kind="stable")]  # grouped by piece
    piece = np.searchsorted(pieces, owner[hit])
    count = np.bincount(piece, minlength=len(pieces))
    start = np.cumsum(count) - count
    phi = np.arctan2(xyz[hit, 1], xyz[hit, 0])
    mean = np.arctan2(np.bincount(piece, np.sin(phi)), np.bincount(piece, np.cos(phi)))
    i, j = neighbours_in_phi(mean, mean, max_dphi)
    i, j = i[i < j], j[i < j]
    # no common module: no hit of j on a module of i
    keys = piece * (int(module.max()) + 1) + module[hit]
    rows, members = member_rows(j, count, start)
    shared = np.isin(i[rows] * (int(module.max()) + 1) + module[hit[members]], keys)
    apart = np.bincount(rows[shared], minlength=len(i)) == 0
    i, j = i[apart], j[apart]
    if not len(i):
        return owner
    rows_i, members_i = member_rows(i, count, start)
    rows_j, members_j = member_rows(j, count, start)
    row = torch.from_numpy(np.concatenate([rows_i, rows_j]))
    xy, z = set_helix_residuals(
        row, torch.from_numpy(hit[np.concatenate([members_i, members_j])]), len(i), xyz
    )
    misfit = torch.maximum(xy / max_xy, z / max_z).numpy()
    out, used = owner.copy(), np.zeros(len(pieces), dtype=bool)
    for k in np.argsort(misfit):
        if misfit[k] >= 1.0:
            break
        if not (used[i[k]] or used[j[k]]):
            out[hit[start[j[k]] : start[j[k]] + count[j[k]]]] = pieces[i[k]]
            used[i[k]] = used[j[k]] = True
    return out


def neighbours_in_phi(a: np.ndarray, b: np.ndarray, max_dphi: float) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i, j) with angles ``a[i]`` and ``b[j]`` within ``max_dphi`` (wrapping at pi)."""
    order = np.argsort(b)
    wrapped = np.concatenate([b[order] - 2 * np.pi, b[order], b[order] + 2 * np.pi])
    lo = np.searchsorted(wrapped, a - max_dphi)
    hi = np.searchsorted(wrapped, a + max_dphi)
    count = hi - lo
    first = np.cumsum(count) - count
    i = np.repeat(np.arange(len(a)), count)
    j = order[(np.repeat(lo, count) + np.arange(count.sum()) - np.repeat(first, count)) % max(len(b), 1)]
    return i, j


def member_rows(groups: np.ndarray, count: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each entry k of ``groups``, its members' positions (``start`` .. + ``count`` of its group).

    Returns (row, position): row k repeated once per member of group ``groups[k]``.
    """
    n = count[groups]
    row = np.repeat(np.arange(len(groups)), n)
    first = np.cumsum(n) - n
    return row, np.repeat(start[groups], n) + np.arange(n.sum()) - np.repeat(first, n)


def extend_tracks(
    owner: np.ndarray,
    xyz: np.ndarray,
    module: np.ndarray,
    max_xy: float,
    max_z: float,
    max_dphi: float = 0.02,
    min_size: int = 2,
) -> np.ndarray:
    """``owner`` (N,) with unassigned hits added to the tracks they extend along a helix.

    A jet core's masks can leave single hits of a particle on no track (a piece of one hit, which
    ``join_fragments`` cannot pair). Each unassigned hit within ``max_dphi`` radians of a track's mean
    phi, on a module the track does not cross yet, is a candidate for that track (of at least
    ``min_size`` hits) when the track's hits and it fit a helix through the beam line
    (``set_helix_residuals`` below ``max_xy`` and ``max_z`` mm). The best fits are taken first, each hit
    once and each track at most one hit per round, until a round adds none.
    """
    out = owner.copy()
    phi = np.arctan2(xyz[:, 1], xyz[:, 0])
    width = int(module.max()) + 1
    while True:
        hit = np.flatnonzero(out >= 0)
        hit = hit[np.argsort(out[hit], kind="stable")]  # grouped by track
        tracks, track, count = np.unique(out[hit], return_inverse=True, return_counts=True)
        start = np.cumsum(count) - count
        free = np.flatnonzero(out < 0)
        if not len(tracks) or not len(free):
            return out
        mean = np.arctan2(np.bincount(track, np.sin(phi[hit])), np.bincount(track, np.cos(phi[hit])))
        h, t = neighbours_in_phi(phi[free], mean, max_dphi)
        h = free[h]
        crossed = np.isin(t * width + module[h], track * width + module[hit])
        h, t = h[(count[t] >= min_size) & ~crossed], t[(count[t] >= min_size) & ~crossed]
        if not len(h):
            return out
        rows, members = member_rows(t, count, start)
        row = torch.from_numpy(np.concatenate([rows, np.arange(len(h))]))
        sets = torch.from_numpy(np.concatenate([hit[members], h]))
        xy, z = set_helix_residuals(row, sets, len(h), xyz)
        misfit = torch.maximum(xy / max_xy, z / max_z).numpy()
        taken, grown = set(), set()
        for k in np.argsort(misfit):
            if misfit[k] >= 1.0:
                break
            if h[k] not in taken and t[k] not in grown:
                out[h[k]] = tracks[t[k]]
                taken.add(h[k])
                grown.add(t[k])
        if not taken:
            return out


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
