"""Fatras on the ACTS generic detector: particles in, simulated hits and secondaries out, as pandas."""

import acts
import acts.examples as ae
import numpy as np
import pandas as pd
from acts.ActsFatrasPythonBindings import Barcode

from hepattn.data.sim.acts_backend.common import QUIET, U


class _Source(ae.IAlgorithm):
    """Puts a ready particle container on the white board (pyacts has no plain ``WhiteBoard.add``)."""

    def __init__(self, key: str):
        super().__init__("HepattnSource", QUIET)
        self.handle = ae.WriteDataHandle(self, ae.SimParticleContainer, "OutputParticles")
        self.handle.initialize(key)
        self.particles = None

    def execute(self, context):
        self.handle(context, self.particles)
        return ae.ProcessCode.SUCCESS


class _Sink(ae.IAlgorithm):
    """Reads the Fatras outputs back from the white board."""

    def __init__(self, hits_key: str, particles_key: str):
        super().__init__("HepattnSink", QUIET)
        self.hits_handle = ae.ReadDataHandle(self, ae.SimHitContainer, "InputSimHits")
        self.hits_handle.initialize(hits_key)
        self.particles_handle = ae.ReadDataHandle(self, ae.SimParticleContainer, "InputParticles")
        self.particles_handle.initialize(particles_key)
        self.hits = self.particles = None

    def execute(self, context):
        self.hits = self.hits_handle(context.eventStore)
        self.particles = self.particles_handle(context.eventStore)
        return ae.ProcessCode.SUCCESS


class FatrasBackend:
    """Generic detector, constant solenoid field and Fatras with EM physics.

    Args:
        seed: seed of the ACTS random numbers; ACTS combines it with the event number, so an event's
            result depends only on (seed, event_id), not on the worker that runs it.
        bfield_t: solenoid field along z in tesla.
        p_min: Fatras minimum momentum in GeV. The pyacts default (0.5 GeV on |p|) silently drops most
            soft central tracks; 0.05 GeV reproduces the real strip occupancy.
        em_physics: multiple scattering, ionisation, bremsstrahlung and photon conversion on/off.
        fit_tracks: also fit tracks (``TrackFitting``): None for no, else its keyword arguments
            (``pt_min``, ``min_measurements``).
    """

    def __init__(
        self,
        seed: int = 0,
        bfield_t: float = 2.0,
        p_min: float = 0.05,
        em_physics: bool = True,
        fit_tracks: dict | None = None,
    ):
        self.detector = ae.GenericDetector(ae.GenericDetector.Config(logLevel=QUIET))
        self.geometry = self.detector.trackingGeometry()
        self.field = acts.ConstantBField(acts.Vector3(0.0, 0.0, bfield_t * U.T))
        config = ae.FatrasSimulation.Config(
            inputParticles="particles_in",
            outputParticles="particles_out",
            outputSimHits="simhits",
            randomNumbers=ae.RandomNumbers(ae.RandomNumbers.Config(seed=int(seed))),
            trackingGeometry=self.geometry,
            magneticField=self.field,
            generateHitsOnSensitive=True,
            emScattering=em_physics,
            emEnergyLossIonisation=em_physics,
            emEnergyLossRadiation=em_physics,
            emPhotonConversion=em_physics,
            pMin=p_min * U.GeV,
        )
        self.fatras = ae.FatrasSimulation(config, QUIET)
        self.simhits_key, self.particles_key = config.outputSimHits, config.outputParticles
        self.source = _Source(config.inputParticles)
        self.sink = _Sink(config.outputSimHits, config.outputParticles)
        # own random streams: fitting or not leaves the Fatras hits as they are
        if fit_tracks is None:
            self.fitting = None
        else:
            from hepattn.data.sim.acts_backend.fitting import TrackFitting

            self.fitting = TrackFitting(self, seed, **fit_tracks)

    def surfaces(self) -> pd.DataFrame:
        """Every sensitive surface: volume, layer, sensitive index and centre (mm)."""
        context = acts.GeometryContext.dangerouslyDefaultConstruct()
        rows = []

        def visit(surface):
            gid = surface.geometryId
            if gid.sensitive:
                c = surface.center(context)
                rows.append((gid.volume, gid.layer, gid.sensitive, c[0], c[1], c[2]))

        self.geometry.visitSurfaces(visit)
        return pd.DataFrame(rows, columns=["volume_id", "layer_id", "sensitive", "cx", "cy", "cz"])

    def simulate(
        self, particles: pd.DataFrame, event_id: int
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
        """Propagate ``particles`` through the detector.

        Args:
            particles: one row per particle to simulate with vertex, particle, sv (barcode fields: the
                collision, the particle's number in it, its secondary vertex or 0), pdg, q, m (GeV),
                vx, vy, vz (mm), t (mm/c), px, py, pz (GeV).
            event_id: event number for the ACTS random stream.

        Returns:
            hits: volume_id, layer_id, sensitive, x, y, z, tx_mom (px, py, pz before the hit), the
                particle barcode fields (vertex, particle, generation, sub) and index (the hit's order
                along its particle).
            secondaries: particles created by Fatras (generation > 0), with the columns of the input
                and the creating process.
            tracks: ``TrackFitting.frame`` when fitting, else None.
        """
        container = ae.SimParticleContainer()
        cols = [particles[c].to_numpy() for c in ("vertex", "particle", "sv", "pdg", "q", "m")]
        pos = particles[["vx", "vy", "vz", "t"]].to_numpy(np.float64)
        mom = particles[["px", "py", "pz"]].to_numpy(np.float64)
        pabs = np.linalg.norm(mom, axis=1)
        for i, (vertex, number, secondary, pdg, q, m) in enumerate(zip(*cols, strict=True)):
            barcode = Barcode()
            barcode.vertexPrimary, barcode.particle = int(vertex), int(number)
            barcode.vertexSecondary = int(secondary)
            sim = ae.SimParticle(barcode, acts.PdgParticle(int(pdg)), float(q), float(m) * U.GeV)
            sim.fourPosition = acts.Vector4(*pos[i])
            sim.direction = acts.Vector3(*(mom[i] / pabs[i]))
            sim.absoluteMomentum = pabs[i] * U.GeV
            container.insert(sim)
        self.source.particles = container
        store = ae.WhiteBoard(QUIET)
        context = ae.AlgorithmContext(0, int(event_id), store, 0)
        chain = [self.source, self.fatras, self.sink, *(self.fitting.algorithms if self.fitting else [])]
        for algorithm in chain:
            if algorithm.execute(context) != ae.ProcessCode.SUCCESS:
                raise RuntimeError(f"ACTS {type(algorithm).__name__} failed on event {event_id}")
        hits, secondaries = _hits_frame(self.sink.hits), _secondaries_frame(self.sink.particles)
        tracks = self.fitting.frame() if self.fitting else None
        self.source.particles = self.sink.hits = self.sink.particles = None
        return hits, secondaries, tracks


def _hits_frame(hits) -> pd.DataFrame:
    rows = []
    for hit in hits:
        gid, pos, mom, pid = hit.geometryId, hit.fourPosition, hit.momentum4Before, hit.particleId
        ids = (gid.volume, gid.layer, gid.sensitive)
        barcode = (pid.vertexPrimary, pid.particle, pid.generation, pid.subParticle, hit.index)
        rows.append((*ids, pos[0], pos[1], pos[2], mom[0], mom[1], mom[2], *barcode))
    columns = ["volume_id", "layer_id", "sensitive", "x", "y", "z", "px", "py", "pz"]
    columns += ["vertex", "particle", "generation", "sub", "index"]
    return _typed(rows, columns)


def _secondaries_frame(particles) -> pd.DataFrame:
    rows = []
    for p in particles:
        pid = p.particleId
        if pid.generation == 0:
            continue
        pos, mom = p.fourPosition, p.momentum
        barcode = (pid.vertexPrimary, pid.particle, pid.generation, pid.subParticle)
        kinematics = (pos[0], pos[1], pos[2], pos[3], mom[0], mom[1], mom[2])
        rows.append((*barcode, int(p.pdg.value), p.charge, p.mass / U.GeV, *kinematics, int(p.process.value)))
    columns = ["vertex", "particle", "generation", "sub", "pdg", "q", "m", "vx", "vy", "vz", "t"]
    return _typed(rows, [*columns, "px", "py", "pz", "process"])


def _typed(rows: list[tuple], columns: list[str]) -> pd.DataFrame:
    """Frame with int64/float64 columns, also when ``rows`` is empty (pandas would make them object)."""
    floats = {"x", "y", "z", "px", "py", "pz", "q", "m", "vx", "vy", "vz", "t"}
    array = np.array(rows, dtype=np.float64).reshape(len(rows), len(columns))
    return pd.DataFrame(
        {c: array[:, i] if c in floats else array[:, i].astype(np.int64) for i, c in enumerate(columns)}
    )
