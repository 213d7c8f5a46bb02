"""A vertex fit of tracks near the beam line: the linearised fit of (x, y, z) to their (d0, z0), adaptive.

A track through the vertex v = (x, y, z) with direction phi, theta has, to first order in the small
transverse offset (curvature neglected: a 0.5 GeV track bends by 0.3 um over 0.1 mm),
    d0 = y cos(phi) - x sin(phi),    z0 = z - cot(theta) (x cos(phi) + y sin(phi)).
Each track weighs by the inverse covariance of its (d0, z0) times an adaptive weight
    w = exp(-chi2 / 2T) / (exp(-chi2 / 2T) + exp(-CHI2_CUT / 2T)),
recomputed from its chi2 after each fit while the temperature T falls to 1 (deterministic annealing: the
adaptive vertex fit of Fruhwirth, Waltenberger and Vanlaer, J. Phys. G 34 (2007) N343, which ACTS's AMVF
uses too), so that tracks of displaced decays or of other collisions fade out instead of pulling.
"""

import numpy as np
import pandas as pd

CHI2_CUT = 9.0  # where a track's weight is 1/2 at T = 1
TEMPERATURES = (256.0, 64.0, 16.0, 4.0, 1.0, 1.0)
BEAM_SPOT = 1.0  # mm: a weak prior on x and y, which two nearly collinear tracks barely fix
FIT_FIELDS = ("d0", "z0", "phi", "theta", "cov_d0_d0", "cov_d0_z0", "cov_z0_z0")  # what the fit reads


def fit_vertex(d0, z0, phi, theta, cov_d0_d0, cov_d0_z0, cov_z0_z0) -> tuple[np.ndarray, np.ndarray]:
    """Fit one vertex to N >= 1 tracks (arrays of N); returns its position (3,) and each track's weight."""
    m = np.stack([d0, z0], axis=-1).astype(np.float64)
    a = np.zeros((len(m), 2, 3))
    a[:, 0, 0], a[:, 0, 1] = -np.sin(phi), np.cos(phi)
    cot = 1.0 / np.tan(theta)
    a[:, 1, 0], a[:, 1, 1], a[:, 1, 2] = -cot * np.cos(phi), -cot * np.sin(phi), 1.0
    cov = np.stack([np.stack([cov_d0_d0, cov_d0_z0], -1), np.stack([cov_d0_z0, cov_z0_z0], -1)], -2)
    weight = np.linalg.inv(cov)
    prior = np.diag([BEAM_SPOT**-2, BEAM_SPOT**-2, 0.0])
    adaptive = np.ones(len(m))
    position = np.zeros(3)
    for temperature in TEMPERATURES:
        at_w = np.einsum("nji,njk->nik", a, weight) * adaptive[:, None, None]  # w A^T W, (n, 3, 2)
        lhs = np.einsum("nij,njk->ik", at_w, a) + prior
        if abs(lhs[2, 2]) < 1e-12:  # every weight vanished: keep the last position
            break
        position = np.linalg.solve(lhs, np.einsum("nij,nj->i", at_w, m))
        residual = m - np.einsum("nij,j->ni", a, position)
        chi2 = np.einsum("ni,nij,nj->n", residual, weight, residual)
        near, cut = np.exp(-chi2 / (2 * temperature)), np.exp(-CHI2_CUT / (2 * temperature))
        adaptive = near / (near + cut)
    return position, adaptive


def fit_tracks(tracks: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``fit_vertex`` of the rows of a tracks table (the ``tracks`` part's columns)."""
    return fit_vertex(*(tracks[f].to_numpy() for f in FIT_FIELDS))
