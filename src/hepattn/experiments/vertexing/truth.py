"""Truth vertices from the simulation's files: a collision with at least two fitted tracks.

A track's collision is the vertex field of its particle_id (1: the hard scatter, 2..: pile-up), also for
tracks of displaced decays and of Fatras secondaries. A collision's position is the production point
that most of its particles share (exactly: Pythia puts every prompt particle there).
"""

import numpy as np
import pandas as pd

from hepattn.data.sim.digitize import decode_particle_id

HARD_SCATTER = 1
MIN_TRACKS = 2


def collision_of(particle_id) -> np.ndarray:
    """The collision number of each particle id (the TrackML vertex field)."""
    return decode_particle_id(np.asarray(particle_id, dtype=np.int64))["vertex"]


def collision_positions(particles: pd.DataFrame) -> pd.DataFrame:
    """Per collision (index), the x, y, z shared by most of its particles (the particles' vx, vy, vz)."""
    points = particles[["vx", "vy", "vz"]].copy()
    points["collision"] = collision_of(particles.particle_id)
    counted = points.value_counts(["collision", "vx", "vy", "vz"], sort=True).reset_index()
    first = counted.drop_duplicates("collision").set_index("collision").sort_index()
    return first[["vx", "vy", "vz"]].rename(columns={"vx": "x", "vy": "y", "vz": "z"}).astype(np.float64)


def truth_vertices(tracks: pd.DataFrame, particles: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """The truth vertex of each track and the truth vertices of one event.

    Returns:
        track_truth: (T,) the track's collision when that collision has ``MIN_TRACKS`` tracks, else 0.
        vertices: id (the collision), x, y, z (its generated position), ntracks; sorted by id.
    """
    collision = collision_of(tracks.particle_id)
    ids, counts = np.unique(collision, return_counts=True)
    kept = ids[counts >= MIN_TRACKS]
    positions = collision_positions(particles)
    missing = np.setdiff1d(kept, positions.index.to_numpy())
    if len(missing):
        raise ValueError(f"collisions {missing.tolist()} have tracks but no particle in the particles part")
    vertices = positions.loc[kept].reset_index(names="id")
    vertices["ntracks"] = counts[counts >= MIN_TRACKS]
    return np.where(np.isin(collision, kept), collision, 0), vertices
