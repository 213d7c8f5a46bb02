"""The real TrackML modules (detectors.csv) as arrays, and the map from ACTS surfaces to them.

The ACTS generic detector is the TrackML detector module for module: same volumes, layers, centres (to
< 4 um), thicknesses and local axes up to sign. Barrel module ids agree; endcap ids do not, so every ACTS
surface is matched to the nearest real centre within its (volume, layer).

Local frame: ``local = R^T (x - c)`` with ``R`` the rot_* matrix (columns u, v, w); a module is the
trapezoid ``|v| < hv``, ``|u| < hu(v)`` with ``hu`` going linearly from minhu at ``v = -hv`` to maxhu at
``v = +hv``, and ``|w| < t / 2``.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

PIXEL_VOLUMES = (7, 8, 9)
BARREL_VOLUMES = (8, 13, 17)
_ROT = [f"rot_{a}{b}" for a in "xyz" for b in "uvw"]


@dataclass(frozen=True)
class Modules:
    """All modules, row ``i`` of every array being module ``i`` of detectors.csv.

    Attributes:
        ids: (M, 3) volume_id, layer_id, module_id.
        centre: (M, 3) centres in mm.
        rotation: (M, 3, 3) rotation, columns are the local u, v, w axes in global coordinates.
        thickness, minhu, maxhu, hv, pitch_u, pitch_v: (M,) sizes in mm.
    """

    ids: np.ndarray
    centre: np.ndarray
    rotation: np.ndarray
    thickness: np.ndarray
    minhu: np.ndarray
    maxhu: np.ndarray
    hv: np.ndarray
    pitch_u: np.ndarray
    pitch_v: np.ndarray

    @classmethod
    def from_frame(cls, detectors: pd.DataFrame) -> "Modules":
        d = detectors
        return cls(
            ids=d[["volume_id", "layer_id", "module_id"]].to_numpy(np.int64),
            centre=d[["cx", "cy", "cz"]].to_numpy(np.float64),
            rotation=d[_ROT].to_numpy(np.float64).reshape(-1, 3, 3),
            thickness=d.module_t.to_numpy(np.float64),
            minhu=d.module_minhu.to_numpy(np.float64),
            maxhu=d.module_maxhu.to_numpy(np.float64),
            hv=d.module_hv.to_numpy(np.float64),
            pitch_u=d.pitch_u.to_numpy(np.float64),
            pitch_v=d.pitch_v.to_numpy(np.float64),
        )

    def __len__(self) -> int:
        return len(self.ids)

    def half_width(self, index: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Half width hu(v) of the trapezoid of modules ``index`` at local ``v``."""
        lo, hi, hv = self.minhu[index], self.maxhu[index], self.hv[index]
        return lo + (hi - lo) * (v + hv) / (2 * hv)

    def to_local(self, index: np.ndarray, xyz: np.ndarray) -> np.ndarray:
        """(N, 3) global points on modules ``index`` -> (N, 3) local (u, v, w)."""
        return np.einsum("nij,ni->nj", self.rotation[index], xyz - self.centre[index])

    def to_global(self, index: np.ndarray, uvw: np.ndarray) -> np.ndarray:
        return np.einsum("nij,nj->ni", self.rotation[index], uvw) + self.centre[index]

    def direction_local(self, index: np.ndarray, vec: np.ndarray) -> np.ndarray:
        """(N, 3) global vectors -> local components (no translation)."""
        return np.einsum("nij,ni->nj", self.rotation[index], vec)

    def inside(self, index: np.ndarray, uvw: np.ndarray, tolerance: float = 1e-3) -> np.ndarray:
        """Whether local points lie on their module: within the thickness and the trapezoid."""
        u, v, w = uvw.T
        hu = self.half_width(index, np.clip(v, -self.hv[index], self.hv[index]))
        return (
            (np.abs(w) <= self.thickness[index] / 2 + tolerance)
            & (np.abs(v) <= self.hv[index] + tolerance)
            & (np.abs(u) <= hu + tolerance)
        )


def match_surfaces(surfaces: pd.DataFrame, modules: Modules, max_distance: float = 0.1) -> dict:
    """Map every ACTS surface (volume_id, layer_id, sensitive) to a row of ``modules``.

    Args:
        surfaces: volume_id, layer_id, sensitive, cx, cy, cz of each ACTS sensitive surface.
        modules: the real modules.
        max_distance: largest allowed centre distance in mm; a larger one means a different geometry.

    Returns:
        ``{(volume, layer, sensitive): module row}``.

    Raises:
        ValueError: a surface has no real module within ``max_distance``, or two share one.
    """
    mapping = {}
    acts_ids = surfaces[["volume_id", "layer_id", "sensitive"]].to_numpy(np.int64)
    acts_centres = surfaces[["cx", "cy", "cz"]].to_numpy(np.float64)
    for volume, layer in np.unique(acts_ids[:, :2], axis=0):
        rows = np.flatnonzero((modules.ids[:, 0] == volume) & (modules.ids[:, 1] == layer))
        mine = np.flatnonzero((acts_ids[:, 0] == volume) & (acts_ids[:, 1] == layer))
        if not len(rows):
            raise ValueError(f"no real modules in volume {volume} layer {layer}")
        distance = np.linalg.norm(acts_centres[mine, None] - modules.centre[None, rows], axis=-1)
        nearest = distance.argmin(axis=1)
        if distance[np.arange(len(mine)), nearest].max() > max_distance:
            raise ValueError(f"volume {volume} layer {layer}: ACTS surface far from every real module")
        if len(np.unique(nearest)) != len(nearest):
            raise ValueError(f"volume {volume} layer {layer}: two ACTS surfaces map to one module")
        for i, j in zip(mine, rows[nearest], strict=True):
            mapping[tuple(int(x) for x in acts_ids[i])] = int(j)
    return mapping


def module_rows(hits: pd.DataFrame, mapping: dict) -> np.ndarray:
    """Row of the real module of each ACTS hit (columns volume_id, layer_id, sensitive)."""
    keys = hits[["volume_id", "layer_id", "sensitive"]].itertuples(index=False, name=None)
    return np.fromiter((mapping[k] for k in keys), dtype=np.int64, count=len(hits))
