"""Tracks fitted by the ACTS Kalman fitter from truth proto-tracks, on the white board of a Fatras event."""

import json
import tempfile
from pathlib import Path

import acts
import acts.examples as ae
import acts.examples.json
import numpy as np
import pandas as pd

from hepattn.data.sim.acts_backend.common import QUIET, U, derived_seeds
from hepattn.data.trackml import TRACK_COVARIANCE, TRACK_PARAMETERS

# Gaussian smearing of the measurements (loc0, loc1) per volume, mm: the generic detector's resolutions
# (pixel pitch 0.05 / sqrt(12); strips: pitch and length / sqrt(12)), as in ACTS's generic digitisation
# config for this detector.
SMEARING = dict.fromkeys((7, 8, 9), (0.01443, 0.01443))
SMEARING |= dict.fromkeys((12, 13, 14), (0.02309, 0.3464))
SMEARING |= dict.fromkeys((16, 17, 18), (0.03464, 3.118))


class _TrackSink(ae.IAlgorithm):
    """Reads the fitted tracks and which particle made each measurement."""

    def __init__(self, tracks_key: str, particles_map_key: str):
        super().__init__("HepattnTrackSink", QUIET)
        self.tracks_handle = ae.ReadDataHandle(self, ae.ConstTrackContainer, "InputTracks")
        self.tracks_handle.initialize(tracks_key)
        self.map_handle = ae.ReadDataHandle(self, ae.MeasurementParticlesMap, "InputMeasurementParticles")
        self.map_handle.initialize(particles_map_key)
        self.tracks = self.particles_of = None

    def execute(self, context):
        self.tracks = self.tracks_handle(context.eventStore)
        self.particles_of = self.map_handle(context.eventStore)
        return ae.ProcessCode.SUCCESS


class TrackFitting:
    """Smearing digitisation, truth proto-tracks and the Kalman fitter, run after Fatras on its white board.

    Every charged particle (generated or made by Fatras) with ``pt_min`` and at least ``min_measurements``
    measurements is fitted from its own measurements, with multiple scattering and energy loss on. The seed
    is the particle's true parameters smeared by ACTS's defaults (it only starts the fit). The output
    perigee is at the origin (``TrackFittingAlgorithm`` puts it there). The measurements are ACTS's own
    smeared Fatras hits: the detector effects of ``digitize`` (noise, nuclear stopping) do not reach them.
    """

    def __init__(self, backend, seed: int, pt_min: float = 0.5, min_measurements: int = 7):
        """``backend``: the ``FatrasBackend`` whose geometry, field and white-board keys are used."""
        digi_randoms, seed_randoms = (
            ae.RandomNumbers(ae.RandomNumbers.Config(seed=s)) for s in derived_seeds(seed, 2)
        )
        with tempfile.TemporaryDirectory() as tmp:  # the smearing config can only be read from a file
            path = Path(tmp) / "smearing.json"
            path.write_text(json.dumps(_smearing_document(SMEARING)))
            digi_configs = acts.examples.json.readDigiConfigFromJson(str(path))
        keys = {"measurements": "measurements", "particles": "fit_particles", "map": "measurement_particles"}
        self.algorithms = [
            ae.DigitizationAlgorithm(
                ae.DigitizationAlgorithm.Config(
                    digitizationConfigs=digi_configs,
                    surfaceByIdentifier=backend.geometry.geoIdSurfaceMap(),
                    randomNumbers=digi_randoms,
                    inputSimHits=backend.simhits_key,
                    outputMeasurements=keys["measurements"],
                    outputMeasurementParticlesMap=keys["map"],
                    outputMeasurementSimHitsMap="measurement_simhits",
                    outputParticleMeasurementsMap="particle_measurements",
                    outputSimHitMeasurementsMap="simhit_measurements",
                ),
                QUIET,
            ),
            ae.ParticleSelector(
                ae.ParticleSelector.Config(
                    inputParticles=backend.particles_key,
                    inputParticleMeasurementsMap="particle_measurements",
                    inputMeasurements=keys["measurements"],
                    outputParticles=keys["particles"],
                    ptMin=pt_min * U.GeV,
                    measurementsMin=int(min_measurements),
                    removeNeutral=True,
                ),
                QUIET,
            ),
            ae.TruthTrackFinder(
                ae.TruthTrackFinder.Config(
                    inputParticles=keys["particles"],
                    inputMeasurements=keys["measurements"],
                    inputParticleMeasurementsMap="particle_measurements",
                    inputSimHits=backend.simhits_key,
                    inputMeasurementSimHitsMap="measurement_simhits",
                    outputProtoTracks="proto_tracks",
                ),
                QUIET,
            ),
            # one perigee per (primary, secondary) vertex: displaced particles need their own
            # vertexSecondary barcode, or their seeds sit at the collision
            ae.ParticleTrackParamExtractor(
                ae.ParticleTrackParamExtractor.Config(
                    inputParticles=keys["particles"], outputTrackParameters="true_parameters"
                ),
                QUIET,
            ),
            ae.TrackParameterSmearing(
                ae.TrackParameterSmearing.Config(
                    inputTrackParameters="true_parameters",
                    outputTrackParameters="seed_parameters",
                    randomNumbers=seed_randoms,
                ),
                QUIET,
            ),
            ae.TrackFittingAlgorithm(
                ae.TrackFittingAlgorithm.Config(
                    inputMeasurements=keys["measurements"],
                    inputProtoTracks="proto_tracks",
                    inputInitialTrackParameters="seed_parameters",
                    inputClusters="",
                    outputTracks="tracks",
                    pickTrack=-1,
                    fit=ae.makeKalmanFitterFunction(
                        backend.geometry,
                        backend.field,
                        multipleScattering=True,
                        energyLoss=True,
                        reverseFilteringMomThreshold=0.0,
                        reverseFilteringCovarianceScaling=100.0,
                        freeToBoundCorrection=ae.FreeToBoundCorrection(False),
                        chi2Cut=float("inf"),
                        useJosephFormulation=False,
                        level=QUIET,
                    ),
                    calibrator=ae.makePassThroughCalibrator(),
                    linkForward=False,
                    referenceSurface=acts.Surface.createPerigee(acts.Vector3(0.0, 0.0, 0.0)),
                ),
                QUIET,
            ),
        ]
        self.sink = _TrackSink("tracks", keys["map"])
        self.algorithms.append(self.sink)

    def frame(self) -> pd.DataFrame:
        """The fitted tracks of the last event, one row each (fits without a perigee left out).

        Columns: the particle's barcode fields (vertex, particle, generation, sub), the perigee parameters
        and the upper triangle of their covariance (``trackml`` names), nmeas, chi2 and ndf. A truth
        proto-track holds only its particle's measurements, so any one of them names the particle.
        """
        tracks, particles_of = self.sink.tracks, self.sink.particles_of
        barcodes = []
        for track in tracks:
            link = ae.IndexSourceLink.fromSourceLink(track.outermostTrackState.uncalibratedSourceLink)
            pid = particles_of.valuesFor(link.index())[0]
            barcodes.append((pid.vertexPrimary, pid.particle, pid.generation, pid.subParticle))
        barcodes = np.array(barcodes, dtype=np.int64).reshape(len(barcodes), 4)
        rows, cols = np.triu_indices(5)
        frame = pd.DataFrame(barcodes, columns=["vertex", "particle", "generation", "sub"])
        parameters = np.asarray(tracks.parameters, dtype=np.float64).reshape(len(tracks), 6)
        covariance = np.asarray(tracks.covariance, dtype=np.float64).reshape(len(tracks), 6, 6)
        for i, name in enumerate(TRACK_PARAMETERS):
            frame[name] = parameters[:, i]
        for name, r, c in zip(TRACK_COVARIANCE, rows, cols, strict=True):
            frame[name] = covariance[:, r, c]
        frame["nmeas"] = np.asarray(tracks.nMeasurements, dtype=np.int64)
        frame["chi2"] = np.asarray(tracks.chi2, dtype=np.float64)
        frame["ndf"] = np.asarray(tracks.ndf, dtype=np.int64)
        self.sink.tracks = self.sink.particles_of = None
        # a fit that never reached the perigee comes back with zero parameters and covariance (about 1
        # track in 1,500 at pile-up 60): it has no perigee to give
        variances = np.diagonal(covariance[:, :5, :5], axis1=1, axis2=2)
        reached = (variances > 0).all(axis=1) & np.isfinite(parameters).all(axis=1)
        return frame[reached].reset_index(drop=True)


def _smearing_document(sigmas: dict[int, tuple[float, float]]) -> dict:
    """ACTS's JSON digitisation config with Gaussian smearing of loc0 and loc1 per volume."""
    entries = [
        {
            "volume": volume,
            "value": {
                "smearing": [
                    {"index": i, "mean": 0.0, "stddev": sigma, "type": "Gauss"}
                    for i, sigma in enumerate(pair)
                ]
            },
        }
        for volume, pair in sigmas.items()
    ]
    header = {"format-version": 0, "value-identifier": "digitization-configuration"}
    return {"acts-geometry-hierarchy-map": header, "entries": entries}
