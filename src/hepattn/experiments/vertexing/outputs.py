"""The files a physicist checks: per method, ``vertices.csv`` and ``track_vertex.csv`` over the test events.

- ``vertices.csv``: event_id, vertex_id (from 1 in each event), x, y, z (mm), score (the hard-scatter
  choice is the highest score of the event); the model's also sigma_x, sigma_y, sigma_z (mm), the
  uncertainties its position head predicts;
- ``track_vertex.csv``: event_id, track_id (the ``tracks`` part's), vertex_id (0: unassigned).

Numbers are written with 9 significant digits: scored from the files, the figures are those of
``metrics.json`` (with 6, a z of 100 mm keeps 0.1 um and the hard-scatter resolution moved by 0.05 um).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from hepattn.experiments.vertexing.baselines import Vertices
from hepattn.experiments.vertexing.events import VertexingEvent


def write_method(folder: str | Path, events: list[VertexingEvent], results: list[Vertices]) -> None:
    """Write one method's two files into ``folder`` (created), whole or not at all."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pairs = list(zip(events, results, strict=True))
    vertices = pd.concat([r.vertices.assign(event_id=e.event_id) for e, r in pairs], ignore_index=True)
    columns = ["event_id", "vertex_id", "x", "y", "z", "score"]
    vertices = vertices[columns + [c for c in ("sigma_x", "sigma_y", "sigma_z") if c in vertices]]
    links = pd.concat(
        [
            pd.DataFrame({"event_id": e.event_id, "track_id": e.tracks.track_id, "vertex_id": r.track_vertex})
            for e, r in pairs
        ],
        ignore_index=True,
    )
    for name, frame in (("vertices", vertices), ("track_vertex", links)):
        partial = folder / f".{name}.csv.tmp"
        frame.to_csv(partial, index=False, float_format="%.9g")
        partial.replace(folder / f"{name}.csv")


def read_method(folder: str | Path, events: list[VertexingEvent]) -> list[Vertices]:
    """Read a method's files back, in the order of ``events``."""
    folder = Path(folder)
    vertices = pd.read_csv(folder / "vertices.csv")
    links = pd.read_csv(folder / "track_vertex.csv")
    out = []
    for event in events:
        found = vertices[vertices.event_id == event.event_id].drop(columns="event_id").reset_index(drop=True)
        link = links[links.event_id == event.event_id].set_index("track_id").vertex_id
        track_vertex = link.reindex(event.tracks.track_id, fill_value=0).to_numpy(np.int64)
        out.append(Vertices(found, track_vertex))
    return out
