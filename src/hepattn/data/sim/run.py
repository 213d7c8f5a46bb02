"""Simulate TrackML events: Pythia 8 -> ACTS Fatras (generic detector) -> detector effects -> CSV.

Usage: ``python -m hepattn.data.sim.run OUT_DIR --events 10 --pileup 200 --workers 2``.
The real ``detectors.csv[.gz]`` is needed for the module ids and frames; it is taken from ``detectors`` or
from ``$HEPATTN_TRACKML_DIR``.
"""

import contextlib
import multiprocessing
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from hepattn.data import kinematics, trackml
from hepattn.data.sim.detector import Modules, match_surfaces, module_rows
from hepattn.data.sim.digitize import DigitizationConfig, build_event, encode_particle_id
from hepattn.data.sim.generate import EventGenerator, GeneratorConfig, event_seeds

PARTS = ("hits", "cells", "particles", "truth")
SIM_PT_MIN = 0.15  # GeV: real primaries below it almost never have hits (findings, sec. 2)
SIM_R_MAX, SIM_Z_MAX = 1000.0, 2900.0  # production vertices outside the tracker are not simulated
_EM = (11, 13, 22)
_FATRAS_PROCESS = 1  # TrackML process field for simulation secondaries (real: 1 EM-like, 2 nuclear)


@dataclass(frozen=True)
class TrackFitConfig:
    """Which particles get a fitted track (``hepattn simulate --tracks``; ``acts_backend.fitting``).

    Attributes:
        pt_min: charged particles above this transverse momentum (GeV) at production.
        min_measurements: and with at least this many measurements.
    """

    pt_min: float = 0.5
    min_measurements: int = 7


def default_detectors() -> Path:
    default = Path(__file__).resolve().parents[5] / "shared" / "data" / "trackml"
    return Path(os.environ.get("HEPATTN_TRACKML_DIR", default)) / "detectors.csv.gz"


class EventSimulator:
    """Everything one worker needs: generator, ACTS backend and the surface-to-module map."""

    def __init__(
        self,
        detectors: Path,
        generator: GeneratorConfig,
        digitization: DigitizationConfig,
        seed: int,
        tracks: TrackFitConfig | None = None,
    ):
        from hepattn.data.sim.acts_backend import FatrasBackend

        self.modules = Modules.from_frame(trackml.read_detectors(detectors))
        self.backend = FatrasBackend(seed=seed, fit_tracks=None if tracks is None else asdict(tracks))
        self.mapping = match_surfaces(self.backend.surfaces(), self.modules)
        self.generator = EventGenerator(generator)
        self.digitization = digitization
        self.seed = seed

    def __call__(self, event_id: int) -> dict[str, pd.DataFrame]:
        gen_seeds, digi_seeds = event_seeds(self.seed, event_id).spawn(2)
        table = self.generator(gen_seeds)
        table["particle_id"] = encode_particle_id(table.vertex, table.particle, 0, 0, 0)
        pt = kinematics.pt(table.px, table.py)
        simulated = (
            (pt > SIM_PT_MIN)
            & ((table.q != 0) | (table.pdg == 22))  # Fatras has no hadronic physics for neutral hadrons
            & (kinematics.radius(table.vx, table.vy) < SIM_R_MAX)
            & (np.abs(table.vz) < SIM_Z_MAX)
        )
        hits, secondaries, tracks = self.backend.simulate(table[simulated], event_id)
        hits["particle_id"] = encode_particle_id(
            hits.vertex,
            hits.particle,
            hits.generation,
            hits["sub"],
            np.where(hits.generation > 0, _FATRAS_PROCESS, 0),
        )
        secondaries["particle_id"] = encode_particle_id(
            secondaries.vertex,
            secondaries.particle,
            secondaries.generation,
            secondaries["sub"],
            _FATRAS_PROCESS,
        )
        with_hits = secondaries.particle_id.isin(hits.particle_id)
        secondaries = secondaries[with_hits | (kinematics.pt(secondaries.px, secondaries.py) > 0.1)]
        particles = pd.concat([table, secondaries], ignore_index=True)
        particles["q"] = np.rint(particles.q).astype(np.int32)
        particles = particles[particles.q != 0]  # the real particle tables list charged particles only
        pdg = pd.Series(particles.pdg.to_numpy(), index=particles.particle_id)
        hits["pdg"] = hits.particle_id.map(pdg).fillna(0).astype(np.int64)
        hits["row"] = module_rows(hits, self.mapping)
        hits = hits.sort_values(["particle_id", "index"], kind="stable").reset_index(drop=True)
        hits = stop_soft_secondaries(hits, secondaries)
        rng = np.random.default_rng(digi_seeds)
        event = build_event(hits, particles, self.modules, self.digitization, rng)
        if tracks is not None:
            event["tracks"] = tracks_frame(tracks)
        return event


def tracks_frame(tracks: pd.DataFrame) -> pd.DataFrame:
    """The backend's fitted tracks as the ``tracks`` part: particle_id from the barcode, track_id 1.. ."""
    process = np.where(tracks.generation > 0, _FATRAS_PROCESS, 0)
    fields = (tracks.vertex, tracks.particle, tracks.generation, tracks["sub"], process)
    particle_id = encode_particle_id(*fields)
    columns = [c for c in trackml.COLUMNS["tracks"] if c not in ("track_id", "particle_id")]
    frame = tracks[columns].copy()
    frame.insert(0, "particle_id", particle_id)
    frame.insert(0, "track_id", np.arange(1, len(frame) + 1, dtype=np.int64))
    return frame


def stop_soft_secondaries(hits: pd.DataFrame, secondaries: pd.DataFrame) -> pd.DataFrame:
    """Secondaries made below the simulation threshold (pT < SIM_PT_MIN) keep only their first hit.

    The real files apply the primaries' 0.15 GeV threshold to secondaries too: in event 1000 the 200
    secondaries below it have one hit each. Fatras follows them down to its ``pMin``; forward ones
    (p > 0.05 GeV but pT of a few tens of MeV) then spiral along z through the endcap disks. ``hits`` must
    be sorted by particle and hit order.
    """
    soft = secondaries.particle_id[kinematics.pt(secondaries.px, secondaries.py) < SIM_PT_MIN]
    first = ~hits.particle_id.duplicated()
    return hits[first | ~hits.particle_id.isin(soft)].reset_index(drop=True)


_WORKER: EventSimulator | None = None


def _init_worker(*args) -> None:
    global _WORKER
    _WORKER = EventSimulator(*args)


def _run_one(job: tuple[int, Path]) -> tuple[Path, int]:
    event_id, out_dir = job
    trackml.write_event(trackml.event_prefix(out_dir, event_id), _WORKER(event_id))
    return out_dir, event_id


def simulate(
    out_dir: str | os.PathLike,
    events: int,
    pileup: float = 200.0,
    seed: int = 0,
    process: str = "ttbar",
    workers: int = 1,
    first_event: int = 1000,
    detectors: str | os.PathLike | None = None,
    generator: GeneratorConfig | None = None,
    digitization: DigitizationConfig | None = None,
    tracks: TrackFitConfig | None = None,
) -> list[int]:
    """Simulate events ``first_event .. first_event + events - 1`` into ``out_dir``; returns the ids made.

    Events whose files already exist are skipped, so an interrupted run can simply be restarted.
    ``generator`` overrides the generator settings; ``process`` and ``pileup`` are applied on top.
    ``tracks`` also fits tracks and writes them as each event's ``tracks`` part.
    """
    ranges = [(out_dir, first_event, events)]
    made = simulate_ranges(ranges, pileup, seed, process, workers, detectors, generator, digitization, tracks)
    return made[Path(out_dir)]


def simulate_ranges(
    ranges: Sequence[tuple[str | os.PathLike, int, int]],
    pileup: float = 200.0,
    seed: int = 0,
    process: str = "ttbar",
    workers: int = 1,
    detectors: str | os.PathLike | None = None,
    generator: GeneratorConfig | None = None,
    digitization: DigitizationConfig | None = None,
    tracks: TrackFitConfig | None = None,
) -> dict[Path, list[int]]:
    """``simulate`` for several ``(out_dir, first_event, events)`` ranges with one pool of workers.

    Each worker sets up the generator and the detector once (about 15 s), so splits simulated together
    pay that once. Returns the sorted ids made in each folder.
    """
    detectors = Path(detectors) if detectors is not None else default_detectors()
    generator = replace(generator or GeneratorConfig(), process=process, pileup=pileup)
    args = (detectors, generator, digitization or DigitizationConfig(), seed, tracks)
    parts = PARTS if tracks is None else (*PARTS, "tracks")
    todo = []
    for out_dir, first_event, events in ranges:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if not any((out_dir / name).exists() for name in ("detectors.csv", "detectors.csv.gz")):
            target = out_dir / ("detectors.csv.gz" if detectors.suffix == ".gz" else "detectors.csv")
            shutil.copyfile(detectors, target)
        todo += [
            (i, out_dir)
            for i in range(first_event, first_event + events)
            if not trackml.event_complete(trackml.event_prefix(out_dir, i), parts)
        ]
    made = {Path(out_dir): [] for out_dir, _, _ in ranges}
    if not todo:
        return made
    with contextlib.ExitStack() as stack:
        if workers <= 1:
            _init_worker(*args)
            results = map(_run_one, todo)
        else:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers, _init_worker, args))
            results = pool.imap_unordered(_run_one, todo)
        for out_dir, event_id in tqdm(results, total=len(todo), desc="simulate", unit="event"):
            made[out_dir].append(event_id)
    return {out_dir: sorted(ids) for out_dir, ids in made.items()}
