"""The classic vertex finders on the same tracks: ACTS's AMVF and the fit of the true track groups.

Each method gives, per event, its vertices (vertex_id from 1, x, y, z, score: the hard-scatter choice is
the highest score) and each track's vertex (0: unassigned), the form ``metrics.vertices`` and the output
files take.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hepattn.experiments.vertexing.fit import fit_tracks

ASSIGN_SIGMA = 3.0  # a track joins the AMVF vertex nearest in z0 significance within this many sigma


@dataclass
class Vertices:
    """One method's vertices of one event and the vertex of each track (0: none)."""

    vertices: pd.DataFrame  # vertex_id, x, y, z, score (and sigma_x, sigma_y, sigma_z where predicted)
    track_vertex: np.ndarray  # (T,)


MEASURED = 0.3  # sigma(q/p) / |q/p| below which a track's pT counts in sum pT^2


def track_pt(tracks: pd.DataFrame) -> np.ndarray:
    """Transverse momentum of each fitted track, GeV."""
    return np.sin(tracks.theta.to_numpy()) / np.abs(tracks.qop.to_numpy())


def sum_pt2(tracks: pd.DataFrame, track_vertex: np.ndarray, num_vertices: int) -> np.ndarray:
    """Sum of pT^2 of the tracks of vertices 1 .. num_vertices, the usual hard-scatter choice.

    Only tracks whose momentum is measured (``MEASURED``) count: one badly measured track (a 106 GeV
    "pT" known to 1000%, seen in a pile-up-60 event) would otherwise outweigh a top-pair collision.
    """
    measured = np.sqrt(tracks.cov_qop_qop.to_numpy()) < MEASURED * np.abs(tracks.qop.to_numpy())
    weights = np.where(measured, track_pt(tracks) ** 2, 0.0)
    return np.bincount(track_vertex, weights=weights, minlength=num_vertices + 1)[1:]


def assign_by_z0(tracks: pd.DataFrame, z: np.ndarray, max_sigma: float = ASSIGN_SIGMA) -> np.ndarray:
    """Each track to the vertex of smallest |z0 - z_v| / sigma(z0) within ``max_sigma``, else 0."""
    if not len(z):
        return np.zeros(len(tracks), dtype=np.int64)
    significance = (
        np.abs(tracks.z0.to_numpy()[:, None] - z[None, :]) / np.sqrt(tracks.cov_z0_z0.to_numpy())[:, None]
    )
    nearest = significance.argmin(axis=1)
    return np.where(significance[np.arange(len(tracks)), nearest] < max_sigma, nearest + 1, 0)


def amvf(events: list[pd.DataFrame], seeder: str) -> list[Vertices]:
    """ACTS AMVF with ``seeder`` ("gaussian" or "grid"); tracks assigned by ``assign_by_z0``."""
    from hepattn.data.sim.acts_backend.vertexing import find_vertices

    out = []
    for tracks, found in zip(events, find_vertices(events, seeder), strict=True):
        z = found.z.to_numpy()
        track_vertex = assign_by_z0(tracks, z)
        frame = vertex_frame(found.to_numpy(), sum_pt2(tracks, track_vertex, len(z)))
        out.append(Vertices(frame, track_vertex))
    return out


def truth_fit(tracks: pd.DataFrame, track_truth: np.ndarray) -> Vertices:
    """Each truth vertex fitted from its own tracks (``fit.fit_tracks``): the upper bound of any finder."""
    ids = np.unique(track_truth[track_truth > 0])
    positions = np.zeros((len(ids), 3))
    track_vertex = np.zeros(len(tracks), dtype=np.int64)
    for number, truth in enumerate(ids, start=1):
        rows = np.flatnonzero(track_truth == truth)
        positions[number - 1], _ = fit_tracks(tracks.iloc[rows])
        track_vertex[rows] = number  # the truth assignment, outliers of the fit included
    return Vertices(vertex_frame(positions, sum_pt2(tracks, track_vertex, len(ids))), track_vertex)


def vertex_frame(xyz: np.ndarray, score: np.ndarray, sigma: np.ndarray | None = None) -> pd.DataFrame:
    """The ``Vertices.vertices`` table of positions (V, 3) and scores (V,): vertex_id 1 .. V.

    ``sigma``: (V, 3) predicted uncertainties of x, y, z (mm), as ``sigma_x``, ``sigma_y``, ``sigma_z``.
    """
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    frame = pd.DataFrame(
        {
            "vertex_id": np.arange(1, len(xyz) + 1),
            "x": xyz[:, 0],
            "y": xyz[:, 1],
            "z": xyz[:, 2],
            "score": score,
        }
    )
    if sigma is not None:
        frame[["sigma_x", "sigma_y", "sigma_z"]] = np.asarray(sigma, dtype=np.float64).reshape(-1, 3)
    return frame
