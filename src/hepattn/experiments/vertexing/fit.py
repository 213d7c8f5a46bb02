"""A vertex fit of tracks near the beam line: the linearised fit of (x, y, z) to their (d0, z0), adaptive.

A track through the vertex v = (x, y, z) with direction phi, theta has, to first order in the small
transverse offset (curvature neglected: a 0.5 GeV track bends by 0.3 um over 0.1 mm),
    d0 = y cos(phi) - x sin(phi),    z0 = z - cot(theta) (x cos(phi) + y sin(phi)).
Each track weighs by the inverse covariance of its (d0, z0) times an adaptive weight (``position`` solves
the weighted equations)
    w = exp(-chi2 / 2T) / (exp(-chi2 / 2T) + exp(-CHI2_CUT / 2T)),
recomputed from its chi2 after each fit while the temperature T falls to 1 (deterministic annealing: the
adaptive vertex fit of Fruhwirth, Waltenberger and Vanlaer, J. Phys. G 34 (2007) N343, which ACTS's AMVF
uses too), so that tracks of displaced decays or of other collisions fade out instead of pulling.
"""

import numpy as np
import pandas as pd
import torch

from hepattn.experiments.vertexing.position import FIT_FIELDS, as_float64, linearised, weighted_fit

CHI2_CUT = 9.0  # where a track's weight is 1/2 at T = 1
TEMPERATURES = (256.0, 64.0, 16.0, 4.0, 1.0, 1.0)


def fit_vertex(d0, z0, phi, theta, cov_d0_d0, cov_d0_z0, cov_z0_z0) -> tuple[np.ndarray, np.ndarray]:
    """Fit one vertex to N >= 1 tracks (arrays of N); returns its position (3,) and each track's weight."""
    values = (d0, z0, phi, theta, cov_d0_d0, cov_d0_z0, cov_z0_z0)
    position, _, adaptive = adaptive_fit(dict(zip(FIT_FIELDS, values, strict=True)), np.ones(len(d0)))
    return position, adaptive


def adaptive_fit(fields: dict[str, np.ndarray], prior: np.ndarray) -> tuple[np.ndarray, ...]:
    """The annealed adaptive fit of N tracks (``FIT_FIELDS`` arrays) whose weights start at ``prior`` (N,).

    Each round is ``position.weighted_fit`` with weights ``prior`` times the adaptive weights of the round
    before. Returns the position (3,), its covariance (3, 3) and the adaptive weights (N,).
    """
    m, a, inverse = linearised({f: as_float64(v) for f, v in fields.items()})
    prior = as_float64(prior)
    adaptive = torch.ones(len(m), dtype=torch.float64)
    position, cov = torch.zeros(3, dtype=torch.float64), torch.full((3, 3), np.nan, dtype=torch.float64)
    for temperature in TEMPERATURES:
        weight = prior * adaptive
        if float(weight @ inverse[:, 1, 1]) < 1e-12:  # every weight vanished: keep the last position
            break
        position, cov = (r[0] for r in weighted_fit(m, a, inverse, weight[None]))
        residual = m - a @ position
        chi2 = torch.einsum("ni,nij,nj->n", residual, inverse, residual)
        near, cut = torch.exp(-chi2 / (2 * temperature)), np.exp(-CHI2_CUT / (2 * temperature))
        adaptive = near / (near + cut)
    return position.numpy(), cov.numpy(), adaptive.numpy()


def fit_tracks(tracks: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``fit_vertex`` of the rows of a tracks table (the ``tracks`` part's columns)."""
    return fit_vertex(*(tracks[f].to_numpy() for f in FIT_FIELDS))
