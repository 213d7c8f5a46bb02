"""The event vertex from pixel hit pairs, and pseudorapidities seen from it."""

import numpy as np

from hepattn.experiments.trackml.beamline import vertex_z, with_vertex_eta

LAYERS = np.array([32.0, 72.0, 116.0, 172.0])  # the pixel barrel radii (mm)


def straight_tracks(num: int, vz: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Hits of ``num`` stiff tracks from (0, 0, vz) on the four pixel barrel layers."""
    phi = np.repeat(rng.uniform(-np.pi, np.pi, num), len(LAYERS))
    cot = np.repeat(rng.uniform(-1.5, 1.5, num), len(LAYERS))
    r = np.tile(LAYERS, num)
    return {"hit_r": r, "hit_z": vz + r * cot, "hit_phi": phi}


def test_the_vertex_is_where_the_stiff_tracks_come_from_among_scattered_hits():
    rng = np.random.default_rng(2)
    event = straight_tracks(30, 12.3, rng)
    noise = {  # 2,000 hits anywhere on the same layers
        "hit_r": rng.choice(LAYERS, 2000),
        "hit_z": rng.uniform(-400, 400, 2000),
        "hit_phi": rng.uniform(-np.pi, np.pi, 2000),
    }
    r, z, phi = (np.concatenate([event[k], noise[k]]) for k in ("hit_r", "hit_z", "hit_phi"))
    assert abs(vertex_z(r, z, phi) - 12.3) < 0.1
    assert vertex_z(noise["hit_r"][:0], noise["hit_z"][:0], noise["hit_phi"][:0]) == 0.0  # no hits, no pair


def test_seen_from_the_vertex_a_track_keeps_its_pseudorapidity_and_a_subset_keeps_the_vertex():
    event = straight_tracks(20, -40.0, np.random.default_rng(4))
    out = with_vertex_eta({k: v.astype(np.float32) for k, v in event.items()})
    eta_pv = out["hit_eta_pv"].reshape(20, len(LAYERS))
    eta_origin = np.arcsinh(event["hit_z"] / event["hit_r"]).reshape(20, len(LAYERS))
    assert np.ptp(eta_pv, axis=1).max() < 1e-4  # constant along each track ...
    assert np.ptp(eta_origin, axis=1).min() > 0.05  # ... where seen from the origin it is not
    part = {k: v[:8] for k, v in out.items()}  # two tracks: too few to find the vertex again
    np.testing.assert_array_equal(with_vertex_eta(part)["hit_eta_pv"], out["hit_eta_pv"][:8])
