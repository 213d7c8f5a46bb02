"""Helix fits of hit sets: one track at a time (numpy), or the masks of many candidates at once (torch).

A prompt particle in a solenoid field follows a helix through the beam line: in x-y a circle through
the origin, x^2 + y^2 = 2 a x + 2 b y, and in (arc length s, z) a straight line. Both are linear least
squares problems. Hits in mm.

# Q masks (track candidates), N hits.
"""

import numpy as np
import torch


def helix_fit(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residuals (mm) of each hit from the helix through the beam line fitted to all of them.

    Returns each hit's distance from the circle and its z residual from the line.
    """
    r2 = x**2 + y**2
    (a, b), *_ = np.linalg.lstsq(np.stack([2 * x, 2 * y], 1), r2, rcond=None)
    radius = np.hypot(a, b)
    xy = np.abs(np.hypot(x - a, y - b) - radius)
    s = 2 * radius * np.arcsin(np.clip(np.sqrt(r2) / (2 * radius), -1.0, 1.0))
    line = np.stack([np.ones_like(s), s], 1)
    coef, *_ = np.linalg.lstsq(line, z, rcond=None)
    return xy, np.abs(z - line @ coef)


def helix_residuals(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """Largest x-y and z residuals (mm) of ``helix_fit``.

    A track built from two particles fits neither; a particle from a displaced vertex does not fit the
    circle either.
    """
    xy, z = helix_fit(x, y, z)
    return float(xy.max()), float(z.max())


def mask_helix_residuals(mask: torch.Tensor, xyz: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q,) largest x-y and z residuals (mm) of ``helix_residuals`` for the hits of each of Q masks.

    The same fits as ``helix_residuals`` on every row of ``mask`` (Q, N) with hits ``xyz`` (N, 3); see
    ``set_helix_residuals``.
    """
    row, hit = mask.nonzero(as_tuple=True)
    return set_helix_residuals(row, hit, mask.shape[0], xyz)


def set_helix_residuals(
    row: torch.Tensor, hit: torch.Tensor, num: int, xyz: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """(num,) largest x-y and z residuals (mm) of ``helix_residuals`` for each of ``num`` hit sets.

    Set ``row[i]`` holds hit ``hit[i]`` (of ``xyz``, (N, 3)). The fits are solved as 2 x 2 normal
    equations from sums over these (set, hit) pairs, so the cost is linear in their number. A set with
    fewer than 3 hits, or whose normal equations are singular (all its hits on one line through the
    origin), has no fit: its residuals are infinite.
    """
    device = row.device
    x, y, z = (torch.as_tensor(xyz[:, i], dtype=torch.float64, device=device)[hit] for i in range(3))

    def per_set(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(num, dtype=torch.float64, device=device).index_add_(0, row, values)

    def largest(values: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros(num, dtype=torch.float64, device=device)
        return zero.scatter_reduce(0, row, values, "amax", include_self=True)

    r2 = x * x + y * y
    sxx, sxy, syy = per_set(x * x), per_set(x * y), per_set(y * y)
    bx, by = per_set(x * r2), per_set(y * r2)  # the circle: [x y] (2a, 2b) = r^2
    det = sxx * syy - sxy * sxy
    circle = det > 1e-12 * sxx * syy
    det = torch.where(circle, det, 1.0)
    a, b = 0.5 * (syy * bx - sxy * by) / det, 0.5 * (sxx * by - sxy * bx) / det
    radius = torch.hypot(a, b)[row]
    xy = ((x - a[row]).hypot(y - b[row]) - radius).abs()
    s = 2 * radius * torch.asin((r2.sqrt() / (2 * radius)).clamp(-1.0, 1.0))  # arc lengths
    n, s1, s2, z1, sz = (
        per_set(torch.ones_like(s)),
        per_set(s),
        per_set(s * s),
        per_set(z),
        per_set(s * z),
    )
    spread = n * s2 - s1 * s1
    line = spread > 1e-12 * n * s2
    slope = (n * sz - s1 * z1) / torch.where(line, spread, 1.0)  # the line z = z0 + slope s
    z0 = (z1 - slope * s1) / n.clamp_min(1.0)
    dz = (z - z0[row] - slope[row] * s).abs()
    fits = (n >= 3) & circle & line
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=device)
    return torch.where(fits, largest(xy), inf), torch.where(fits, largest(dz), inf)
