"""ACTS's Adaptive Multi-Vertex Finder on fitted tracks given as a table (the ``tracks`` part's columns).

pyacts cannot put track parameters on a white board from Python, but ACTS reads them from its own CSV
format; so the tracks go through a private temporary folder, and the vertices come back through
``CsvVertexWriter``, which writes positions only: AMVF's track-to-vertex weights cannot be read from Python.
"""

import tempfile
from collections.abc import Iterable
from pathlib import Path

import acts
import acts.examples as ae
import numpy as np
import pandas as pd

from hepattn.data.sim.acts_backend.common import QUIET, U
from hepattn.data.trackml import TRACK_PARAMETERS

SEEDERS = {"gaussian": "GaussianSeeder", "grid": "AdaptiveGridSeeder"}
_ACTS_NAMES = dict(zip(TRACK_PARAMETERS, ("d0", "z0", "phi", "theta", "qop"), strict=True))


def find_vertices(
    events: Iterable[pd.DataFrame], seeder: str = "gaussian", bfield_t: float = 2.0
) -> list[pd.DataFrame]:
    """AMVF with the ``seeder`` ("gaussian" or "grid") on each event's tracks.

    Args:
        events: per event, its tracks with the ``trackml.COLUMNS["tracks"]`` parameters and covariance.
        seeder: AMVF's seed finder, "gaussian" or "grid" (adaptive grid).
        bfield_t: the solenoid field of the simulation, T.

    Returns:
        Per event, its vertices (x, y, z in mm), in AMVF's order.
    """
    if seeder not in SEEDERS:
        raise ValueError(f"unknown AMVF seeder {seeder!r}; known: {list(SEEDERS)}")
    events = list(events)
    field = acts.ConstantBField(acts.Vector3(0.0, 0.0, bfield_t * U.T))
    with tempfile.TemporaryDirectory(prefix="hepattn-amvf-") as tmp:
        folder = Path(tmp)
        for number, tracks in enumerate(events):
            path = folder / f"event{number:09d}-tracks.csv"
            _acts_csv(tracks).to_csv(path, index=False, float_format="%.17g")
        reader = ae.CsvTrackParameterReader(
            ae.CsvTrackParameterReader.Config(
                inputDir=str(folder), inputStem="tracks", outputTrackParameters="parameters"
            ),
            QUIET,
        )
        finder = ae.AdaptiveMultiVertexFinderAlgorithm(
            ae.AdaptiveMultiVertexFinderAlgorithm.Config(
                inputTrackParameters="parameters",
                outputProtoVertices="proto_vertices",
                outputVertices="vertices",
                bField=field,
                seedFinder=getattr(ae.VertexSeedFinder, SEEDERS[seeder]),
            ),
            QUIET,
        )
        writer = ae.CsvVertexWriter(
            ae.CsvVertexWriter.Config(inputVertices="vertices", outputDir=str(folder), outputStem="vertices"),
            QUIET,
        )
        found = []
        for number, tracks in enumerate(events):
            if len(tracks) < 2:
                found.append(pd.DataFrame({c: np.zeros(0) for c in "xyz"}))
                continue
            store = ae.WhiteBoard(QUIET)  # the context does not keep it alive
            context = ae.AlgorithmContext(0, number, store, 0)
            steps = (("read", reader.read), ("find", finder.execute), ("write", writer.write))
            for name, step in steps:
                if step(context) != ae.ProcessCode.SUCCESS:
                    raise RuntimeError(f"ACTS AMVF ({seeder}) failed to {name} on event {number}")
            found.append(pd.read_csv(folder / f"event{number:09d}-vertices.csv")[["x", "y", "z"]])
    return found


def _acts_csv(tracks: pd.DataFrame) -> pd.DataFrame:
    """The tracks in ``CsvTrackParameterReader``'s columns: parameters, var_a, cov_ab (both orders)."""
    names = list(TRACK_PARAMETERS)
    frame = pd.DataFrame({"trackId": np.arange(len(tracks))})
    for name in names:
        frame[_ACTS_NAMES[name]] = tracks[name].to_numpy(np.float64)
    for name in names:
        frame[f"var_{_ACTS_NAMES[name]}"] = tracks[f"cov_{name}_{name}"].to_numpy(np.float64)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j:
                key = f"cov_{a}_{b}" if i < j else f"cov_{b}_{a}"
                frame[f"cov_{_ACTS_NAMES[a]}{_ACTS_NAMES[b]}"] = tracks[key].to_numpy(np.float64)
    return frame
