"""The events of a vertexing run: each event's fitted tracks and its truth, read from simulated files."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hepattn.data import trackml
from hepattn.experiments.vertexing.truth import truth_vertices


@dataclass
class VertexingEvent:
    """One event: its id, fitted tracks (the ``tracks`` part), each track's truth vertex and the truth."""

    event_id: int
    tracks: pd.DataFrame
    track_truth: np.ndarray
    truth: pd.DataFrame  # id, x, y, z, ntracks


def read_events(folder: str | Path) -> list[VertexingEvent]:
    """Every event of ``folder`` that has a tracks part (``hepattn simulate --tracks``), sorted by id."""
    prefixes = trackml.find_events(Path(folder))
    if not prefixes:
        raise FileNotFoundError(f"no TrackML events (eventNNNNNNNNN-hits.csv[.gz]) in {folder}")
    events = []
    for prefix in prefixes:
        frames = trackml.read_event(prefix, ["tracks", "particles"])
        track_truth, truth = truth_vertices(frames["tracks"], frames["particles"])
        event_id = int(prefix.name.removeprefix("event"))
        events.append(VertexingEvent(event_id, frames["tracks"], track_truth, truth))
    return events
