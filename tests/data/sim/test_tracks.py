"""Tracks fitted by the ACTS Kalman fitter in the simulation (``hepattn simulate --tracks``)."""

import numpy as np
import pytest

from hepattn.data import trackml
from hepattn.data.kinematics import perigee, wrap_phi
from hepattn.data.trackml import TRACK_PARAMETERS

pytestmark = pytest.mark.requiresdata


@pytest.fixture(scope="module")
def gun_with_and_without_tracks(tmp_path_factory, trackml_dir):
    """One event of 150 muons (1-10 GeV, |eta| < 2.5), simulated with and without the fit."""
    pytest.importorskip("acts")
    from hepattn.data.sim.generate import GeneratorConfig
    from hepattn.data.sim.run import TrackFitConfig, simulate

    tmp = tmp_path_factory.mktemp("fit")
    gun = GeneratorConfig(process="gun", pileup=0, gun_particles=150, gun_pdg=13)
    runs = []
    for name, tracks in (("fitted", TrackFitConfig()), ("plain", None)):
        simulate(
            tmp / name,
            events=1,
            seed=5,
            detectors=trackml_dir / "detectors.csv.gz",
            generator=gun,
            process="gun",
            pileup=0,
            tracks=tracks,
        )
        runs.append(tmp / name)
    return runs


def test_fitting_leaves_the_trackml_files_as_they_are(gun_with_and_without_tracks):
    fitted, plain = gun_with_and_without_tracks
    for part in trackml.PARTS:
        name = f"event000001000-{part}.csv.gz"
        assert (fitted / name).read_bytes() == (plain / name).read_bytes(), part
    assert not (plain / "event000001000-tracks.csv.gz").exists()


def test_pulls_against_the_true_perigee_have_mean_zero_and_width_one(gun_with_and_without_tracks):
    prefix = trackml.event_prefix(gun_with_and_without_tracks[0], 1000)
    frames = trackml.read_event(prefix, ["tracks", "particles"])
    tracks, particles = frames["tracks"], frames["particles"].set_index("particle_id")
    assert len(tracks) >= 140  # 150 muons above 1 GeV, almost all with >= 7 measurements
    assert tracks.particle_id.is_unique and (tracks.nmeas >= 7).all()
    truth_of = particles.loc[tracks.particle_id]
    truth = perigee(*(truth_of[c].to_numpy(np.float64) for c in ("q", "vx", "vy", "vz", "px", "py", "pz")))
    fit = tracks[list(TRACK_PARAMETERS)].to_numpy()
    sigma = np.sqrt(tracks[[f"cov_{p}_{p}" for p in TRACK_PARAMETERS]].to_numpy())
    residual = fit - truth
    residual[:, 2] = wrap_phi(residual[:, 2])
    pulls = residual / sigma
    # 150 tracks: the mean of a unit Gaussian is known to +-0.08, its width to +-6%
    assert np.abs(pulls.mean(axis=0)).max() < 0.3, pulls.mean(axis=0)
    width = pulls.std(axis=0)
    assert ((width > 0.8) & (width < 1.25)).all(), width


def test_every_covariance_is_positive_definite_after_the_round_trip(gun_with_and_without_tracks):
    prefix = trackml.event_prefix(gun_with_and_without_tracks[0], 1000)
    tracks = trackml.read_event(prefix, ["tracks"])["tracks"]
    rows, cols = np.triu_indices(5)
    cov = np.zeros((len(tracks), 5, 5))
    cov[:, rows, cols] = tracks[list(trackml.TRACK_COVARIANCE)].to_numpy()
    cov[:, cols, rows] = cov[:, rows, cols]
    assert (np.linalg.eigvalsh(cov) > 0).all()
