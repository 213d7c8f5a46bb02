"""Mending the pieces a jet core cuts particles into, by helix fits.

In a jet core neighbouring particles cross the same modules, and the tracker's masks can cut each of
them into pieces: an inner and an outer part on different tracks, or single hits on none. Pixel hits
are far more precise than the distance between such neighbours, so a helix fit through the beam line
tells which pieces belong together (``join_fragments``) and which free hit extends which track
(``extend_tracks``), as a combinatorial Kalman filter does when it extends a segment (ACTS,
arXiv 2106.13593). Hits in mm.
"""

import numpy as np
import torch

from hepattn.experiments.trackml.helix import set_helix_residuals


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
    width = int(module.max()) + 1
    rows, members = member_rows(j, count, start)
    shared = np.isin(i[rows] * width + module[hit[members]], piece * width + module[hit])
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
        usable = (count[t] >= min_size) & ~crossed
        h, t = h[usable], t[usable]
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
