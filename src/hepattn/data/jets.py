"""Jets on truth particles with fastjet (anti-kt, arXiv 0802.1189), and distances to their axes.

Tracking in jet cores is where hits of several particles crowd together; the distance of a particle to
the nearest jet axis, dR = sqrt(d_eta^2 + d_phi^2), says how crowded its neighbourhood is.
"""

import contextlib
import os
import sys

import numpy as np

COLLISION_SHIFT = 52  # TrackML particle_id: bits [52, 64) number the collision, 1 = hard scatter


def collision(particle_id: np.ndarray) -> np.ndarray:
    """(P,) the collision of each particle: 1 for the hard scatter, 2, 3, ... for pile-up."""
    return np.asarray(particle_id, dtype=np.int64) >> COLLISION_SHIFT


@contextlib.contextmanager
def _quiet_stdout():
    """Silence file descriptor 1 (fastjet's C++ library prints its banner there on first use)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def antikt_jets(
    pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, radius: float = 0.4, min_pt: float = 20.0
) -> dict[str, np.ndarray]:
    """Anti-kt jets of massless particles, pT above ``min_pt`` (GeV), hardest first.

    Returns:
        ``pt``, ``eta``, ``phi`` (J,) of the jets (phi in [-pi, pi]).
    """
    import fastjet

    pt, eta, phi = (np.asarray(a, dtype=np.float64) for a in (pt, eta, phi))
    px, py, pz, e = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)
    particles = [fastjet.PseudoJet(*map(float, v)) for v in zip(px, py, pz, e, strict=True)]
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, radius)
    with _quiet_stdout():
        sequence = fastjet.ClusterSequence(particles, definition)
        jets = fastjet.sorted_by_pt(sequence.inclusive_jets(min_pt))
    return {
        "pt": np.array([j.pt() for j in jets]),
        "eta": np.array([j.eta() for j in jets]),
        "phi": np.array([j.phi_std() for j in jets]),
    }


def nearest_jet_dr(eta: np.ndarray, phi: np.ndarray, jet_eta: np.ndarray, jet_phi: np.ndarray) -> np.ndarray:
    """(P,) dR from each particle to the nearest jet axis; inf when there is no jet."""
    if not len(jet_eta):
        return np.full(len(eta), np.inf)
    d_eta = np.asarray(eta)[:, None] - np.asarray(jet_eta)[None, :]
    d_phi = np.angle(np.exp(1j * (np.asarray(phi)[:, None] - np.asarray(jet_phi)[None, :])))
    return np.sqrt(d_eta**2 + d_phi**2).min(axis=1)
