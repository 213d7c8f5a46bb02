"""Seeded event generation: a hard process plus Poisson pile-up from Pythia 8, or a particle gun.

Every random number of an event comes from ``np.random.SeedSequence([seed, event_id])``; Pythia is
re-seeded from it before each collision, so an event does not depend on which worker made it or on the
events made before it, and a dataset can be sharded freely.

Units: mm, mm/c, GeV (Pythia's and TrackML's).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hepattn.data import kinematics

PROCESSES = {
    "ttbar": ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on"],
    "minbias": ["SoftQCD:inelastic = on"],
}
# elastic included: 200 SoftQCD:all collisions reproduce the real vertex and hit counts (findings, sec. 4)
PILEUP = ["SoftQCD:all = on"]
NEUTRINOS = (12, 14, 16)
COLUMNS = ["vertex", "particle", "sv", "pdg", "q", "m", "vx", "vy", "vz", "t", "px", "py", "pz"]
DISPLACED = 1e-3  # mm: a particle made further than this from its collision comes from a secondary vertex
_MAX_PYTHIA_SEED = 900_000_000


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate.

    Attributes:
        process: "ttbar", "minbias" (one hard collision from Pythia) or "gun" (no Pythia).
        pileup: mean number of pile-up collisions (Poisson), SoftQCD:all.
        ecm: centre-of-mass energy in GeV.
        sigma_xy: transverse size of the luminous region in mm (event 1000: 0.015).
        sigma_z: longitudinal size in mm (event 1000: 6).
        pt_min: particles written to the particle table, GeV.
        eta_max: particles written to the particle table.
        gun_particles: number of gun particles per event.
        gun_pdg: gun particle species.
        gun_pt: (min, max) pT of gun particles, GeV, uniform.
        gun_eta: |eta| maximum of gun particles.
    """

    process: str = "ttbar"
    pileup: float = 200.0
    ecm: float = 14000.0
    sigma_xy: float = 0.015
    sigma_z: float = 6.0
    pt_min: float = 0.1
    eta_max: float = 4.0
    gun_particles: int = 10
    gun_pdg: int = 13
    gun_pt: tuple[float, float] = (1.0, 10.0)
    gun_eta: float = 2.5


def secondary_vertices(position: np.ndarray) -> np.ndarray:
    """Secondary-vertex number of each particle from its production point (N, 3), mm from its collision.

    0 within ``DISPLACED`` of the collision, else 1, 2, ... per distinct point, in order of first
    appearance (Pythia gives the daughters of one decay the same point exactly).
    """
    displaced = np.linalg.norm(position, axis=1) > DISPLACED
    number = np.zeros(len(position), dtype=np.int64)
    if displaced.any():
        _, first, inverse = np.unique(position[displaced], axis=0, return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first))  # unique points in the order they first appear
        number[displaced] = rank[inverse.ravel()] + 1
    return number


def event_seeds(seed: int, event_id: int) -> np.random.SeedSequence:
    """The seed sequence of one event, from the run seed and the event id."""
    return np.random.SeedSequence([int(seed), int(event_id)])


class EventGenerator:
    """Makes the particle table of one event; Pythia instances are built on first use (init takes ~5 s)."""

    def __init__(self, config: GeneratorConfig):
        if config.process not in (*PROCESSES, "gun"):
            raise ValueError(f"unknown process {config.process!r}; known: {[*PROCESSES, 'gun']}")
        self.config = config
        self._pythia: dict[str, object] = {}

    def __call__(self, seeds: np.random.SeedSequence) -> pd.DataFrame:
        """All final-state particles of one event passing ``pt_min`` and ``eta_max``, one row each.

        Vertex 1 is the hard collision (or the gun), vertices 2.. the pile-up collisions; particles are
        numbered from 1 within their vertex. ``sv`` numbers the displaced production points of a collision
        from 1 (0: made at the collision point), so that the particles of one decay share it. Columns are
        ``COLUMNS``.
        """
        cfg = self.config
        pythia_seeds = seeds.spawn(2)
        rng = np.random.default_rng(seeds)
        n_collisions = 1 + int(rng.poisson(cfg.pileup)) if cfg.pileup > 0 else 1
        vertices = rng.normal(0.0, [cfg.sigma_xy, cfg.sigma_xy, cfg.sigma_z], size=(n_collisions, 3))
        frames = []
        if cfg.process == "gun":
            frames.append(self._gun(rng))
        else:
            frames.append(self._collision(cfg.process, pythia_seeds[0], 0))
        for i in range(1, n_collisions):
            frames.append(self._collision("pileup", pythia_seeds[1], i))
        for vertex, (frame, offset) in enumerate(zip(frames, vertices, strict=True), start=1):
            frame["vertex"] = vertex
            frame[["vx", "vy", "vz"]] += offset
        table = pd.concat(frames, ignore_index=True)
        pt = kinematics.pt(table.px, table.py)
        keep = (pt > cfg.pt_min) & (np.abs(kinematics.eta(pt, table.pz)) < cfg.eta_max)
        table = table[keep].reset_index(drop=True)
        table["particle"] = table.groupby("vertex").cumcount() + 1
        return table[COLUMNS]

    def _collision(self, kind: str, seeds: np.random.SeedSequence, index: int) -> pd.DataFrame:
        """One Pythia collision, re-seeded from ``seeds`` and ``index`` so it does not depend on history."""
        pythia = self._get_pythia(kind)
        sub = np.random.SeedSequence(seeds.entropy, spawn_key=(*seeds.spawn_key, index))
        pythia.rndm.init(1 + int(sub.generate_state(1)[0]) % _MAX_PYTHIA_SEED)
        while not pythia.next():
            pass
        rows = []
        event = pythia.event
        for i in range(event.size()):
            p = event[i]
            if not p.isFinal() or p.idAbs() in NEUTRINOS:
                continue
            vertex = (p.xProd(), p.yProd(), p.zProd(), p.tProd())
            rows.append((p.id(), p.charge(), p.m(), *vertex, p.px(), p.py(), p.pz()))
        columns = ["pdg", "q", "m", "vx", "vy", "vz", "t", "px", "py", "pz"]
        frame = pd.DataFrame(rows, columns=columns).astype({"pdg": np.int64})
        frame["sv"] = secondary_vertices(frame[["vx", "vy", "vz"]].to_numpy())
        return frame

    def _gun(self, rng: np.random.Generator) -> pd.DataFrame:
        cfg = self.config
        n = cfg.gun_particles
        pt = rng.uniform(*cfg.gun_pt, size=n)
        eta = rng.uniform(-cfg.gun_eta, cfg.gun_eta, size=n)
        phi = rng.uniform(-np.pi, np.pi, size=n)
        sign = rng.choice([-1, 1], size=n)
        charge = -sign if cfg.gun_pdg in (11, 13) else sign  # a negative lepton has a positive pdg id
        mass = {11: 0.000511, 13: 0.105658, 211: 0.139570, 321: 0.493677, 2212: 0.938272}[cfg.gun_pdg]
        zeros = np.zeros(n)
        return pd.DataFrame(
            {"pdg": sign * cfg.gun_pdg, "q": charge.astype(float), "m": mass, "sv": 0}
            | {"vx": zeros, "vy": zeros, "vz": zeros, "t": zeros}
            | {"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta)}
        )

    def _get_pythia(self, kind: str):
        if kind not in self._pythia:
            import pythia8mc

            pythia = pythia8mc.Pythia("", False)
            settings = PILEUP if kind == "pileup" else PROCESSES[kind]
            for line in [
                f"Beams:eCM = {self.config.ecm}",
                "Next:numberCount = 0",
                "Print:quiet = on",
                *settings,
            ]:
                pythia.readString(line)
            if not pythia.init():
                raise RuntimeError(f"Pythia failed to initialise for {kind}")
            self._pythia[kind] = pythia
        return self._pythia[kind]
