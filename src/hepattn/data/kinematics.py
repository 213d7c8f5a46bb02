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
