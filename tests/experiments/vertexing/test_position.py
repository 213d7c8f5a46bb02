"""The position head: its weighted fit, the covariance it predicts, and what its Gaussian NLL rewards."""

import numpy as np
import torch

from hepattn.experiments.vertexing.position import (
    FIT_FIELDS,
    VertexPositionTask,
    as_float64,
    linearised,
    weighted_fit,
)
from hepattn.models.losses import gaussian_nll_loss


def _tracks(vertex, n, sigma, rng):
    """Fields of n tracks from ``vertex`` (mm) with (d0, z0) smeared by ``sigma`` mm (uncorrelated)."""
    x, y, z = vertex
    phi, theta = rng.uniform(-np.pi, np.pi, n), rng.uniform(0.4, 2.7, n)
    d0 = y * np.cos(phi) - x * np.sin(phi) + rng.normal(0, sigma, n)
    z0 = z - (x * np.cos(phi) + y * np.sin(phi)) / np.tan(theta) + rng.normal(0, sigma, n)
    cov = np.full(n, sigma**2)
    return {"d0": d0, "z0": z0, "phi": phi, "theta": theta} | {
        "cov_d0_d0": cov,
        "cov_d0_z0": 0 * cov,
        "cov_z0_z0": cov,
    }


def fit_arrays(fields, weight):
    """``weighted_fit`` of one set of tracks (numpy fields) with weights (N,): v (3,), C (3, 3)."""
    m, a, inverse = linearised({k: as_float64(v) for k, v in fields.items()})
    position, cov = weighted_fit(m, a, inverse, as_float64(weight)[None])
    return position[0].numpy(), cov[0].numpy()


def test_the_predicted_uncertainty_is_the_spread_of_the_fitted_position():
    rng = np.random.default_rng(3)
    vertex = np.array([0.012, -0.008, 41.3])
    pulls = []
    for _ in range(400):
        fields = _tracks(vertex, 12, 0.03, rng)
        position, cov = fit_arrays(fields, np.ones(12))
        pulls.append((position - vertex) / np.sqrt(np.diag(cov)))
    pulls = np.array(pulls)
    assert np.abs(pulls.mean(0)).max() < 0.2
    assert np.allclose(pulls.std(0), 1.0, atol=0.12)


def test_a_track_with_zero_weight_does_not_move_the_vertex():
    rng = np.random.default_rng(4)
    good = _tracks((0.0, 0.0, 10.0), 8, 0.02, rng)
    other = _tracks((0.0, 0.0, 12.0), 1, 0.02, rng)
    both = {f: np.concatenate([good[f], other[f]]) for f in FIT_FIELDS}
    alone, _ = fit_arrays(good, np.ones(8))
    ignored, _ = fit_arrays(both, np.append(np.ones(8), 0.0))
    pulled, _ = fit_arrays(both, np.ones(9))
    assert np.allclose(alone, ignored, atol=1e-9)
    assert pulled[2] - alone[2] > 0.1  # weight 1: the other collision's track drags z by ~2 mm / 9


def _nll(task, fields, weight, vertex):
    batch = {f"track_fit_{f}": torch.tensor(v)[None] for f, v in fields.items()}
    batch["track_valid"] = torch.ones(1, len(fields["d0"]), dtype=torch.bool)
    position, cov = task.position(torch.tensor(weight, dtype=torch.float64)[None, None], batch)
    return float(gaussian_nll_loss(position - torch.tensor(vertex)[None, None], cov))


def test_the_nll_rewards_keeping_good_tracks_and_dropping_strays():
    # averaged over events: one lucky fit of half the tracks can land nearer the vertex
    rng = np.random.default_rng(5)
    vertex = (0.0, 0.0, -20.0)
    task = VertexPositionTask("vertex_position", dim=8)
    weights = {
        "good tracks": np.append(np.ones(10), 0.0),
        "with the stray": np.ones(11),
        "half the good tracks": np.append(np.r_[np.ones(5), np.zeros(5)], 0.0),
    }
    mean = dict.fromkeys(weights, 0.0)
    for _ in range(100):
        good = _tracks(vertex, 10, 0.02, rng)
        stray = _tracks((0.0, 0.0, -19.9), 1, 0.02, rng)
        fields = {f: np.concatenate([good[f], stray[f]]) for f in FIT_FIELDS}
        for name, weight in weights.items():
            mean[name] += _nll(task, fields, weight, vertex) / 100
    assert mean["good tracks"] < mean["with the stray"] - 1.0  # a 0.1 mm stray costs through the residual
    assert mean["good tracks"] < mean["half the good tracks"] - 0.5  # a missing track through log det C
