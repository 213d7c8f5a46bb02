import numpy as np
import pytest

from hepattn.data.kinematics import helix_radius, perigee


def _along_helix(q, x, y, z, px, py, pz, turn_angle, field=2.0):
    """Position and momentum after the particle turned by ``turn_angle`` (rad) along its helix."""
    pt = np.hypot(px, py)
    r = helix_radius(pt, field)
    sign = np.sign(q * field)
    phi0 = np.arctan2(py, px)
    cx, cy = x + sign * r * np.sin(phi0), y - sign * r * np.cos(phi0)
    phi1 = phi0 - sign * turn_angle
    x1, y1 = cx - sign * r * np.sin(phi1), cy + sign * r * np.cos(phi1)
    return x1, y1, z + r * turn_angle * pz / pt, pt * np.cos(phi1), pt * np.sin(phi1), pz


def test_a_stiff_track_beside_the_axis_has_its_offset_as_d0():
    # 1 TeV along +x, made 2 mm above the axis at z = 5: d0 = +2 (ACTS sign), z0 = 5, phi = 0
    d0, z0, phi, theta, qop = perigee(1, 0.0, 2.0, 5.0, 1000.0, 0.0, 0.0)
    assert d0 == pytest.approx(2.0, abs=1e-6)
    assert z0 == pytest.approx(5.0, abs=1e-6)
    assert phi == pytest.approx(0.0, abs=1e-6)
    assert theta == pytest.approx(np.pi / 2)
    assert qop == pytest.approx(1e-3)


def test_a_track_from_the_axis_has_d0_zero_and_z0_its_origin():
    q = np.array([1, -1, 1])
    out = perigee(q, 0.0, 0.0, [3.0, -7.0, 0.0], [1.0, 0.5, -2.0], [0.3, -1.0, 0.1], [2.0, -1.0, 0.0])
    assert np.allclose(out[:, 0], 0.0, atol=1e-9)
    assert np.allclose(out[:, 1], [3.0, -7.0, 0.0], atol=1e-9)
    assert np.allclose(out[:, 2], np.arctan2([0.3, -1.0, 0.1], [1.0, 0.5, -2.0]), atol=1e-9)


@pytest.mark.parametrize("q", [1, -1])
def test_every_point_of_one_helix_gives_the_same_perigee(q):
    # a 1.5 GeV track made 3 mm from the axis, and the same track 0.1 and 0.4 rad further along
    start = (q, 1.0, -2.8, 4.0, 1.2, 0.9, 0.7)
    reference = perigee(*start)
    for angle in (0.1, 0.4):
        later = perigee(q, *_along_helix(*start, angle))
        assert np.allclose(later, reference, atol=1e-6)
    assert abs(reference[0]) > 0.5  # really displaced, so the sign convention matters
