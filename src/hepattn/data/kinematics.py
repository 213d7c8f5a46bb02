"""Pure physics helpers shared by the simulation, the features and the metrics.

Units: lengths in mm, momenta in GeV, magnetic field in T, angles in radians (TrackML's units).
Functions take and return numpy arrays (or scalars).
"""

import numpy as np

# pT [GeV] = C * B [T] * R [m] for a unit charge; 0.299792458 = c / 1e9.
PT_PER_TESLA_METRE = 0.299792458


def pt(px, py):
    """Transverse momentum."""
    return np.hypot(px, py)


def radius(x, y):
    """Transverse distance from the beam line."""
    return np.hypot(x, y)


def phi(x, y):
    """Azimuth in (-pi, pi]."""
    return np.arctan2(y, x)


def theta(r, z):
    """Polar angle from the transverse and longitudinal components."""
    return np.arctan2(r, z)


def eta(r, z):
    """Pseudorapidity -ln tan(theta / 2) = asinh(z / r)."""
    return np.arcsinh(z / r)


def wrap_phi(dphi):
    """Map an angle difference into [-pi, pi)."""
    return np.remainder(np.asarray(dphi) + np.pi, 2 * np.pi) - np.pi


def conformal(x, y):
    """Conformal map (u, v) = (x, y) / (x^2 + y^2): circles through the origin become straight lines."""
    r2 = x * x + y * y
    return x / r2, y / r2


def helix_radius(pt_gev, field_tesla=2.0):
    """Transverse radius of curvature [mm] of a unit-charge track."""
    return 1000.0 * np.asarray(pt_gev) / (PT_PER_TESLA_METRE * field_tesla)


def perigee(q, vx, vy, vz, px, py, pz, field_tesla=2.0):
    """Perigee parameters (d0, z0, phi, theta, q/p) at the z axis of a charged particle made at (vx, vy, vz).

    The helix is followed (backwards if need be) to its point of closest approach to the z axis in the
    transverse plane. Conventions are ACTS's: d0 = y cos(phi) - x sin(phi) at that point, with phi the
    direction there; z0 its z; q/p in e/GeV. Returns an array (..., 5).
    """
    q, vx, vy, vz, px, py, pz = np.broadcast_arrays(*map(np.asarray, (q, vx, vy, vz, px, py, pz)))
    transverse = np.hypot(px, py)
    start_phi = np.arctan2(py, px)
    r = helix_radius(transverse, field_tesla)
    turn = np.sign(q * field_tesla)  # +1: clockwise seen from +z
    centre_x, centre_y = vx + turn * r * np.sin(start_phi), vy - turn * r * np.cos(start_phi)
    distance = np.hypot(centre_x, centre_y)
    ux, uy = centre_x / distance, centre_y / distance
    x, y = centre_x - r * ux, centre_y - r * uy  # the circle's point nearest the axis
    direction = np.arctan2(turn * ux, -turn * uy)
    path = -turn * r * wrap_phi(direction - start_phi)  # transverse path length from production
    d0 = y * np.cos(direction) - x * np.sin(direction)
    z0 = vz + path * pz / transverse
    return np.stack([d0, z0, direction, np.arctan2(transverse, pz), q / np.hypot(transverse, pz)], axis=-1)
