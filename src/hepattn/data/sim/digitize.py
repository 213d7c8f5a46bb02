"""From simulated hits to a TrackML event: detector effects, noise, cells, particle ids and truth weights.

Fatras in pyacts has EM physics only, so two measured effects are added here (see
shared/notes/simulation-findings.md): nuclear interactions stop hadrons layer by layer, and every module
carries Poisson noise. Positions are measured in the real module frames (``detector.Modules``).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hepattn.data import kinematics
from hepattn.data.sim.detector import PIXEL_VOLUMES, Modules

# Silicon-equivalent thickness of module plus support per volume (mm), for the nuclear-interaction model
MATERIAL_THICKNESS = {7: 1.65, 8: 1.65, 9: 1.65, 12: 2.5, 13: 2.5, 14: 2.5, 16: 3.35, 17: 3.35, 18: 3.35}
LAMBDA_SI = 465.0  # nuclear interaction length of silicon, mm
NOT_HADRONS = (11, 13, 22)
# TrackML particle_id bits: vertex [52, 64), particle [36, 52), generation [24, 36), sub-particle
# [12, 24), creating process [0, 12); read from the ids of real event 1000.
_SHIFTS = {"vertex": 52, "particle": 36, "generation": 24, "sub": 12, "process": 0}
# Official TrackML weights (arXiv:1904.06778, sec. 2.4): hits near both ends of a track weigh more, and
# low-pT particles less. The order profile is given at evenly spaced fractions of the track length.
ORDER_PROFILE = np.array([10.0, 8.0, 6.0, 5.0, 3.0, 3.0, 3.0, 5.0, 6.0])
MAX_HITS_FOR_WEIGHT = 20
PT_WEIGHT = ((0.5, 0.2), (3.0, 1.0))  # 0.2 below 0.5 GeV, linear up to 1 at 3 GeV, 1 above
MIN_HITS_FOR_WEIGHT = 4
_CELL_SAMPLES = 8


@dataclass(frozen=True)
class DigitizationConfig:
    """Detector effects added after Fatras.

    Attributes:
        noise_per_module: mean number of noise hits per module (Poisson); 0.94 matches the real strips.
        nuclear_k: scale of the nuclear stopping probability 1 - exp(-k t / (lambda_I cos alpha)); 2.7
            reproduces the real fraction of truncated primaries.
        inefficiency: probability to lose a hit.
    """

    noise_per_module: float = 0.94
    nuclear_k: float = 2.7
    inefficiency: float = 0.0


def encode_particle_id(vertex, particle, generation, sub, process) -> np.ndarray:
    """TrackML particle_id from its fields (arrays or scalars)."""
    fields = {
        "vertex": vertex,
        "particle": particle,
        "generation": generation,
        "sub": sub,
        "process": process,
    }
    out = np.zeros(np.broadcast(*fields.values()).shape, dtype=np.int64)
    for name, values in fields.items():
        out |= np.asarray(values, dtype=np.int64) << _SHIFTS[name]
    return out


def decode_particle_id(particle_id) -> dict[str, np.ndarray]:
    ids = np.asarray(particle_id, dtype=np.int64)
    bits = {"vertex": 12, "particle": 16, "generation": 12, "sub": 12, "process": 12}
    return {name: (ids >> _SHIFTS[name]) & ((1 << n) - 1) for name, n in bits.items()}


def nuclear_survival(hits: pd.DataFrame, rows: np.ndarray, modules: Modules, k: float, rng) -> np.ndarray:
    """Keep-mask after hadrons stop at a hit with P = 1 - exp(-k t / (lambda_I cos alpha)).

    ``hits`` must be sorted along each particle; the stopping hit itself is kept, later ones dropped.
    """
    if k <= 0 or not len(hits):
        return np.ones(len(hits), dtype=bool)
    mom = hits[["px", "py", "pz"]].to_numpy()
    normal = modules.rotation[rows][:, :, 2]
    cos_alpha = np.abs((mom * normal).sum(1)) / np.maximum(np.linalg.norm(mom, axis=1), 1e-12)
    thickness = hits.volume_id.map(MATERIAL_THICKNESS).to_numpy()
    p_stop = 1 - np.exp(-k * thickness / (LAMBDA_SI * np.maximum(cos_alpha, 0.05)))
    stop = (rng.random(len(hits)) < p_stop) & ~np.isin(np.abs(hits.pdg.to_numpy()), NOT_HADRONS)
    key = hits.particle_id.to_numpy()
    stopped_before = pd.Series(stop.astype(int)).groupby(key).cumsum().to_numpy() - stop
    return stopped_before == 0


def measure(
    true_xyz: np.ndarray, mom: np.ndarray, rows: np.ndarray, modules: Modules
) -> tuple[np.ndarray, pd.DataFrame]:
    """Measured global positions and pixel cells of hits at ``true_xyz`` on modules ``rows``.

    Pixels: the track's path through the sensor thickness is sampled, each sample lands in a
    (ch0, ch1) cell, a cell's value is its share of the path times path length / thickness, and the
    position is the charge-weighted cell centroid. Strips: the centre of the crossed strip.

    Returns:
        (N, 3) measured positions, and cells with columns hit (row in the input), ch0, ch1, value.
    """
    local = modules.to_local(rows, true_xyz)
    direction = modules.direction_local(rows, mom)
    dw = np.where(np.abs(direction[:, 2]) < 1e-3, 1e-3, direction[:, 2])
    half_t = modules.thickness[rows] / 2
    # in-plane displacement across the thickness, capped at 1 mm for grazing tracks
    span = np.clip(direction[:, :2] / dw[:, None] * half_t[:, None] * 2, -1.0, 1.0)
    pixel = np.isin(modules.ids[rows, 0], PIXEL_VOLUMES)
    fractions = np.where(pixel[:, None], (np.arange(_CELL_SAMPLES) + 0.5) / _CELL_SAMPLES - 0.5, 0.0)
    u = local[:, 0, None] + span[:, 0, None] * fractions
    v = local[:, 1, None] + span[:, 1, None] * fractions
    ch0, ch1, cu, cv = _cells(rows[:, None], u, v, modules)
    measured_v = np.clip(cv.mean(1), -modules.hv[rows], modules.hv[rows])
    hu = modules.half_width(rows, measured_v)
    measured_u = np.clip(cu.mean(1), -hu, hu)
    measured = modules.to_global(rows, np.stack([measured_u, measured_v, np.zeros(len(rows))], 1))
    path = np.linalg.norm(np.column_stack([span, 2 * half_t]), axis=1) / (2 * half_t)
    hit = np.repeat(np.arange(len(rows)), _CELL_SAMPLES)
    cells = pd.DataFrame({"hit": hit, "ch0": ch0.ravel(), "ch1": ch1.ravel()})[
        np.repeat(pixel, _CELL_SAMPLES)
    ]
    cells = cells.groupby(["hit", "ch0", "ch1"], sort=True).size().rename("n").reset_index()
    cells["value"] = cells.n / _CELL_SAMPLES * path[cells.hit.to_numpy()]
    return measured, cells.drop(columns="n")


def _cells(rows, u, v, modules: Modules):
    """Cell indices of local points and the cell centres; the grid covers the bounding box of the module."""
    pu, pv, maxhu, hv = modules.pitch_u[rows], modules.pitch_v[rows], modules.maxhu[rows], modules.hv[rows]
    ch0 = np.clip(np.floor((u + maxhu) / pu), 0, np.ceil(2 * maxhu / pu) - 1).astype(np.int64)
    ch1 = np.clip(np.floor((v + hv) / pv), 0, np.ceil(2 * hv / pv) - 1).astype(np.int64)
    return ch0, ch1, (ch0 + 0.5) * pu - maxhu, (ch1 + 0.5) * pv - hv


def noise_hits(modules: Modules, rate: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Poisson(``rate``) noise hits per module, uniform on its trapezoid: module rows and global points."""
    rows = np.repeat(np.arange(len(modules)), rng.poisson(rate, len(modules)))
    u, v = np.empty(len(rows)), np.empty(len(rows))
    todo = np.arange(len(rows))
    while len(todo):  # rejection sampling from the bounding box
        r = rows[todo]
        u[todo] = rng.uniform(-1, 1, len(todo)) * modules.maxhu[r]
        v[todo] = rng.uniform(-1, 1, len(todo)) * modules.hv[r]
        todo = todo[np.abs(u[todo]) > modules.half_width(r, v[todo])]
    return rows, modules.to_global(rows, np.stack([u, v, np.zeros(len(rows))], 1))


def truth_weights(particle_id: np.ndarray, rank: np.ndarray, nhits: np.ndarray, pt: np.ndarray) -> np.ndarray:
    """TrackML score weight of each hit, normalised to sum 1 over the event (arXiv 1904.06778).

    The order weight follows ``ORDER_PROFILE`` stretched over the particle's hits (the first and
    last hits matter most), normalised so that each particle's hits sum to 1; particles with fewer
    than ``MIN_HITS_FOR_WEIGHT`` hits and noise weigh 0, and longer tracks are treated as having
    ``MAX_HITS_FOR_WEIGHT`` hits (later hits weigh 0). The pT weight is 0.2 up to 0.5 GeV, rising
    linearly to 1 at 3 GeV.

    Args:
        particle_id: (N,) 0 for noise.
        rank: (N,) 0-based position of the hit along its particle.
        nhits: (N,) number of hits of the hit's particle.
        pt: (N,) transverse momentum of the hit's particle, GeV.
    """
    length = np.minimum(nhits, MAX_HITS_FOR_WEIGHT)
    position = rank / np.maximum(length - 1, 1) * (len(ORDER_PROFILE) - 1)
    order = np.interp(position, np.arange(len(ORDER_PROFILE)), ORDER_PROFILE)
    order[(particle_id == 0) | (nhits < MIN_HITS_FOR_WEIGHT) | (rank >= length)] = 0.0
    _, track = np.unique(particle_id, return_inverse=True)
    per_track = np.bincount(track, weights=order)
    order = np.divide(order, per_track[track], out=np.zeros_like(order), where=per_track[track] > 0)
    (pt_lo, w_lo), (pt_hi, w_hi) = PT_WEIGHT
    weight = order * np.interp(pt, [0.05, pt_lo, pt_hi], [w_lo, w_lo, w_hi], left=0.0)
    total = weight.sum()
    return weight / total if total > 0 else weight


def build_event(
    hits: pd.DataFrame, particles: pd.DataFrame, modules: Modules, config: DigitizationConfig, rng
) -> dict[str, pd.DataFrame]:
    """The four TrackML parts of one event.

    Args:
        hits: simulated hits sorted along each particle, with x, y, z, px, py, pz, pdg, particle_id and
            ``row`` (the real module row of the hit).
        particles: every particle of the event (generator and secondaries) with particle_id, vx, vy, vz,
            px, py, pz, q.
        modules: the real modules.
        config: detector effects.
        rng: numpy generator of this event.
    """
    keep = nuclear_survival(hits, hits.row.to_numpy(), modules, config.nuclear_k, rng)
    keep &= rng.random(len(hits)) >= config.inefficiency
    hits = hits[keep].reset_index(drop=True)
    noise_rows, noise_xyz = noise_hits(modules, config.noise_per_module, rng)
    rows = np.concatenate([hits.row.to_numpy(), noise_rows])
    true_xyz = np.concatenate([hits[["x", "y", "z"]].to_numpy(), noise_xyz])
    mom = np.concatenate([hits[["px", "py", "pz"]].to_numpy(), np.zeros((len(noise_rows), 3))])
    # noise crosses the sensor at normal incidence: one cell
    direction = np.concatenate([mom[: len(hits)], modules.rotation[noise_rows][:, :, 2]])
    particle_id = np.concatenate([hits.particle_id.to_numpy(), np.zeros(len(noise_rows), np.int64)])
    rank = np.concatenate([hits.groupby("particle_id").cumcount().to_numpy(), np.zeros(len(noise_rows))])
    measured, cells = measure(true_xyz, direction, rows, modules)

    # hit ids follow the module order, as in the real files; ties broken by particle and position
    order = np.lexsort((true_xyz[:, 2], true_xyz[:, 1], true_xyz[:, 0], particle_id, rows))
    hit_id = np.empty(len(rows), np.int64)
    hit_id[order] = np.arange(1, len(rows) + 1)
    ids = modules.ids[rows]
    frame = pd.DataFrame({"hit_id": hit_id, "x": measured[:, 0], "y": measured[:, 1], "z": measured[:, 2]})
    frame[["volume_id", "layer_id", "module_id"]] = ids

    counts = pd.Series(particle_id[particle_id > 0]).value_counts()
    particles = particles.assign(nhits=particles.particle_id.map(counts).fillna(0).astype(np.int64))
    pt_of = pd.Series(kinematics.pt(particles.px, particles.py).to_numpy(), index=particles.particle_id)
    nhits_of_hit = pd.Series(particle_id).map(counts).fillna(0).to_numpy()
    pt_of_hit = pd.Series(particle_id).map(pt_of).fillna(0).to_numpy()
    truth = pd.DataFrame({"hit_id": hit_id, "particle_id": particle_id})
    truth[["tx", "ty", "tz"]] = true_xyz
    truth[["tpx", "tpy", "tpz"]] = mom
    truth["weight"] = truth_weights(particle_id, rank, nhits_of_hit, pt_of_hit)
    cells = cells.assign(hit_id=hit_id[cells.hit.to_numpy()]).sort_values(["hit_id", "ch0", "ch1"])
    return {
        "hits": frame.iloc[order].reset_index(drop=True),
        "truth": truth.iloc[order].reset_index(drop=True),
        "particles": particles[["particle_id", "vx", "vy", "vz", "px", "py", "pz", "q", "nhits"]],
        "cells": cells[["hit_id", "ch0", "ch1", "value"]].reset_index(drop=True),
    }
