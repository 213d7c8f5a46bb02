"""Vertexing pieces on hand-built cases: the vertex fit, truth vertices, track assignment, duplicates."""

import numpy as np
import pandas as pd
import pytest

from hepattn.data.sim.digitize import encode_particle_id
from hepattn.data.trackml import TRACK_COVARIANCE
from hepattn.experiments.vertexing.baselines import Vertices, assign_by_z0, sum_pt2, truth_fit
from hepattn.experiments.vertexing.fit import fit_tracks
from hepattn.experiments.vertexing.reconstruct import select
from hepattn.experiments.vertexing.truth import collision_positions, truth_vertices


def _tracks(vertex, phi, theta, sigma=0.02, rng=None, pt=2.0):
    """Straight tracks from ``vertex`` (x, y, z), their (d0, z0) smeared by ``sigma`` mm."""
    x, y, z = vertex
    phi, theta = np.asarray(phi, float), np.asarray(theta, float)
    d0 = y * np.cos(phi) - x * np.sin(phi)
    z0 = z - (x * np.cos(phi) + y * np.sin(phi)) / np.tan(theta)
    if rng is not None:
        d0, z0 = d0 + rng.normal(0, sigma, len(phi)), z0 + rng.normal(0, sigma, len(phi))
    frame = pd.DataFrame({"d0": d0, "z0": z0, "phi": phi, "theta": theta, "qop": np.sin(theta) / pt})
    for name in TRACK_COVARIANCE:
        frame[name] = sigma**2 if name in ("cov_d0_d0", "cov_z0_z0") else 0.0
    frame.loc[:, "cov_phi_phi"] = frame.loc[:, "cov_theta_theta"] = 1e-6
    frame.loc[:, "cov_qop_qop"] = (0.01 * frame.qop) ** 2
    return frame


def _fit(frame):
    return fit_tracks(frame)


def test_the_fit_finds_the_vertex_of_exact_tracks():
    rng = np.random.default_rng(0)
    frame = _tracks((0.03, -0.02, 12.5), rng.uniform(-np.pi, np.pi, 20), rng.uniform(0.3, 2.8, 20))
    position, weight = _fit(frame)
    assert position == pytest.approx([0.03, -0.02, 12.5], abs=1e-4)  # the 1 mm beam-spot prior barely pulls
    assert (weight > 0.98).all()  # 1 / (1 + exp(-CHI2_CUT / 2)) at chi2 = 0


def test_the_fit_averages_the_noise_and_fades_out_outliers():
    rng = np.random.default_rng(1)
    frame = _tracks((0.0, 0.0, -4.0), rng.uniform(-np.pi, np.pi, 50), rng.uniform(0.5, 2.6, 50), rng=rng)
    frame.loc[:4, "z0"] += 0.6  # five tracks of a collision 0.6 mm away (30 sigma)
    position, weight = _fit(frame)
    assert (weight[:5] < 0.01).all() and np.median(weight[5:]) > 0.9
    assert abs(position[2] + 4.0) < 4 * 0.02 / np.sqrt(45)  # the z error of 45 tracks of 20 um, 4 sigma


def test_truth_vertices_are_collisions_with_two_tracks_at_their_most_common_point():
    pid = encode_particle_id(np.array([1, 1, 1, 2, 3, 3]), np.array([1, 2, 3, 1, 1, 2]), 0, 0, 0)
    particles = pd.DataFrame(
        {
            "particle_id": pid,
            # collision 1 at z = 5 (a displaced daughter at z = 9), 2 at -3, 3 at 1
            "vx": 0.0,
            "vy": 0.0,
            "vz": [5.0, 5.0, 9.0, -3.0, 1.0, 1.0],
        }
    )
    assert collision_positions(particles).z.tolist() == [5.0, -3.0, 1.0]
    tracks = pd.DataFrame({"particle_id": pid[[0, 2, 3, 4, 5]]})
    track_truth, vertices = truth_vertices(tracks, particles)
    assert track_truth.tolist() == [1, 1, 0, 3, 3]  # collision 2 has one track: no truth vertex
    assert vertices.id.tolist() == [1, 3] and vertices.z.tolist() == [5.0, 1.0]
    assert vertices.ntracks.tolist() == [2, 2]


def test_tracks_join_the_amvf_vertex_nearest_in_z0_significance():
    tracks = pd.DataFrame({"z0": [0.0, 0.9, 2.0, 10.0], "cov_z0_z0": [0.1**2, 0.5**2, 0.1**2, 0.1**2]})
    # track 2 (0.9 +- 0.5) is 1.8 sigma from z=0 and 2.2 from z=2; track 4 is 80 sigma from any vertex
    assert assign_by_z0(tracks, np.array([0.0, 2.0])).tolist() == [1, 1, 2, 0]


def test_sum_pt2_ignores_tracks_without_a_measured_momentum():
    tracks = _tracks((0, 0, 0), [0.0, 1.0, 2.0], [1.0, 1.0, 1.0])
    tracks.loc[2, "cov_qop_qop"] = tracks.qop[2] ** 2  # 100% uncertain
    score = sum_pt2(tracks, np.array([1, 2, 2]), 2)
    assert score == pytest.approx([4.0, 4.0])


def test_truth_fit_gives_each_truth_vertex_its_tracks():
    rng = np.random.default_rng(2)
    a = _tracks((0, 0, 1.0), rng.uniform(-3, 3, 5), rng.uniform(0.5, 2.5, 5), pt=5.0)
    b = _tracks((0, 0, -2.0), rng.uniform(-3, 3, 4), rng.uniform(0.5, 2.5, 4))
    tracks = pd.concat([a, b], ignore_index=True)
    found = truth_fit(tracks, np.array([1] * 5 + [4] * 4))
    assert isinstance(found, Vertices)
    assert found.vertices.z.to_numpy() == pytest.approx([1.0, -2.0], abs=1e-3)
    assert found.track_vertex.tolist() == [1] * 5 + [2] * 4
    assert np.argmax(found.vertices.score) == 0  # five 5 GeV tracks outweigh four 2 GeV ones


def test_duplicate_candidates_of_one_vertex_give_one_vertex():
    # queries 0 and 1 both describe tracks 0-2, query 2 tracks 3-4, query 3 is invalid
    mask = np.zeros((4, 6), dtype=bool)
    mask[0, :3] = mask[1, :3] = mask[2, 3:5] = mask[3, :] = True
    valid = np.array([0.9, 0.8, 0.7, 0.1])
    quality = np.array([0.5, 0.9, 0.8, 1.0])
    owner = select(valid, quality, mask, min_kept=0.5)
    assert owner.tolist() == [1, 1, 1, 2, 2, -1]  # query 1 ranks first (0.72 > 0.45); track 5 on none


def test_a_candidate_keeping_too_little_of_its_mask_is_a_duplicate():
    # query 1 (tracks 0-5) ranks second: query 0 took tracks 0-3, it would keep 2 of its 6
    mask = np.zeros((2, 6), dtype=bool)
    mask[0, :4] = mask[1, :] = True
    valid, quality = np.array([0.9, 0.9]), np.array([0.9, 0.5])
    assert select(valid, quality, mask, min_kept=0.3).tolist() == [0, 0, 0, 0, 1, 1]
    assert select(valid, quality, mask, min_kept=0.5).tolist() == [0, 0, 0, 0, -1, -1]
