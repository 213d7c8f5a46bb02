"""Predictions on disk: one HDF5 file with a group per event (the submission CSV: ``submission``).

Each event group holds the predictions (``hit_filter_prob``, ``hit_track``, ``track_*``) next to the
truth needed to score them (``hit_id``, ``hit_particle``, ``hit_weight``, hit positions and the
``particle_*`` table), so that ``hepattn evaluate`` needs nothing but this file.
"""

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import h5py
import numpy as np

TRUTH_KEYS = ("hit_id", "hit_particle", "hit_weight", "hit_x", "hit_y", "hit_z")
PARTICLE_KEYS = tuple(f"particle_{k}" for k in ("id", "pt", "eta", "phi", "vz", "nhits"))


def write_predictions(
    path: str | os.PathLike, events: Iterable[tuple[str, dict, dict]], attrs: dict | None = None
) -> Path:
    """Write ``(name, prepared event, predictions)`` triples to ``path`` atomically (temp file, rename).

    ``attrs`` (e.g. the target cuts and the filter threshold) are stored on the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        for name, event, preds in events:
            group = f.create_group(name)
            for key in (*TRUTH_KEYS, *PARTICLE_KEYS):
                group.create_dataset(key, data=event[key])
            for key, value in preds.items():
                group.create_dataset(key, data=value, compression="gzip" if value.size > 1000 else None)
    tmp.replace(path)
    return path


def read_predictions(path: str | os.PathLike) -> tuple[dict, Iterator[tuple[str, dict[str, np.ndarray]]]]:
    """The file's attributes and an iterator over ``(event name, {key: array})``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no predictions file at {path}")
    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
        names = sorted(f.keys())

    def events():
        with h5py.File(path, "r") as f:
            for name in names:
                yield name, {k: f[name][k][()] for k in f[name]}

    return attrs, events()


def event_id(name: str) -> int:
    """The TrackML event id of an event name such as ``event000001000``."""
    if not name.startswith("event") or not name[5:].isdigit():
        raise ValueError(f"'{name}' is not a TrackML event name (eventNNNNNNNNN)")
    return int(name[5:])
