"""``hepattn reconstruct``: trained models on TrackML events, with or without truth, to a submission.

The input is a folder of TrackML events as the challenge gave them: hits, and cells when present;
particles and truth are read only when both are there (then the predictions file that ``hepattn
evaluate`` scores is written too). The output is the TrackML submission, ``event_id,hit_id,track_id``,
with every hit of every event exactly once: hits outside the models' volumes, hits the filter drops and
hits on no track get track_id 0, which the TrackML score treats as one more track that matches nothing.

The models come from a folder as ``hepattn demo`` leaves it (``reconstruction.json`` names the
checkpoints, the volumes and the working point) or as explicit checkpoints; each checkpoint is rebuilt
from the ``config.yaml`` that ``hepattn fit`` saved beside it. A filter that reads cell features needs
the cells file unless it also reads ``has_cells``, as the demo's does (trained with some events'
cells withheld, it takes events with and without them).
"""

import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from hepattn.data.trackml import find_events, read_event
from hepattn.experiments.trackml.dataset import CELL_FEATURES, CELL_FLAG, has_truth, prepare_event
from hepattn.experiments.trackml.predictions import event_id, write_predictions
from hepattn.experiments.trackml.prep import event_parts
from hepattn.experiments.trackml.reco import Reconstruction, input_fields
from hepattn.training.cli import build, load_weights
from hepattn.training.module import MaskFormerModule

MANIFEST = "reconstruction.json"


def model_from_checkpoint(checkpoint: str | os.PathLike, device: str = "cpu") -> MaskFormerModule:
    """The module of a ``hepattn fit`` checkpoint, built from the run's saved ``config.yaml``; eval mode.

    ``hepattn fit`` writes ``lightning_logs/version_N/config.yaml`` and the checkpoints under
    ``lightning_logs/version_N/checkpoints/``; the config is looked for there.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}")
    saved = checkpoint.parents[1] / "config.yaml"
    if not saved.is_file():
        raise FileNotFoundError(
            f"no {saved}: a checkpoint is rebuilt from the config.yaml that `hepattn fit` saves in its "
            "run folder (lightning_logs/version_N/)"
        )
    import yaml

    resolved = yaml.safe_load(saved.read_text())
    # the module and its data, without the arguments of `fit` (ckpt_path, ...) or its trainer's
    resolved = {k: resolved[k] for k in ("seed_everything", "model", "data") if k in resolved}
    resolved["trainer"] = {"accelerator": "cpu", "devices": 1, "logger": False}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump(resolved, sort_keys=False))  # key order is meaningful
        module = build([config]).model
    return load_weights(module, checkpoint).to(device)


def reads_cells(module: MaskFormerModule) -> bool:
    """Whether the model's input networks read cell features (``dataset.CELL_FEATURES``)."""
    return any(f in CELL_FEATURES for f in input_fields(module))


def needs_cells(module: MaskFormerModule) -> bool:
    """Whether the model reads cell features but not ``has_cells``: it cannot take an event without them."""
    return reads_cells(module) and CELL_FLAG not in input_fields(module)


@dataclass
class TrainedModels:
    """A filter (or one per input: with cells, hits only), a tracker and the working point.

    A filter that reads ``has_cells`` (the demo's) takes events with and without cells; one that reads
    cell features without it only events with cells (``needs_cells``).

    Attributes:
        filters: the trained hit filters, those that read cells first; an event gets the first it suits.
        tracker: the trained tracker.
        volumes: detector volumes the models were trained on; other hits get track_id 0.
        min_pt: the targets' pT cut (GeV), stored with the predictions for ``hepattn evaluate``.
        settings: keyword arguments of ``reco.Reconstruction`` (threshold, track_threshold, ...).
        sources: where each model came from, for messages.
    """

    filters: list[MaskFormerModule]
    tracker: MaskFormerModule
    volumes: list[int] | None
    min_pt: float = 1.0
    settings: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)

    def reconstruction(self, prefix: Path, with_cells: bool) -> Reconstruction:
        """The reconstruction for an event with or without its cells file (``prefix`` names it)."""
        usable = [f for f in self.filters if with_cells or not needs_cells(f)]
        if not usable:
            raise FileNotFoundError(
                f"no {prefix}-cells.csv or {prefix}-cells.csv.gz: the filter "
                f"{self.sources.get('filters', ['given'])[0]} reads cell features "
                f"({', '.join(CELL_FEATURES)}) and not {CELL_FLAG}; give the cells file, or a filter "
                f"that reads {CELL_FLAG} (trained with cell_dropout, as `hepattn demo`'s) or no cell features"
            )
        return Reconstruction(usable[0], self.tracker, **self.settings)


def load_models(
    models: str | os.PathLike | None = None,
    filter_ckpt: str | os.PathLike | None = None,
    tracker_ckpt: str | os.PathLike | None = None,
    device: str = "cpu",
) -> TrainedModels:
    """The models of a ``hepattn demo`` folder (``models``), or of explicit checkpoints.

    Explicit checkpoints replace those of the folder; without a folder the volumes and the working
    point are the quick demo's.
    """
    from hepattn.experiments.trackml.demo import PIXEL_VOLUMES, QUICK, reconstruction_settings
    from hepattn.training.fit import last_checkpoint

    manifest: dict = {
        "volumes": PIXEL_VOLUMES,
        "min_pt": QUICK.min_pt,
        "settings": reconstruction_settings(QUICK),
    }
    filters, tracker = [], None
    if models is not None:
        models = Path(models)
        path = models / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"no {path}: --models takes the folder of a finished `hepattn demo`")
        manifest = json.loads(path.read_text())
        filters = [models / p for p in manifest["filters"]]
        tracker = models / manifest["tracker"]
    filters = [Path(filter_ckpt)] if filter_ckpt is not None else filters
    tracker = Path(tracker_ckpt) if tracker_ckpt is not None else tracker
    if not filters or tracker is None:
        raise ValueError("give --models DIR, or both --filter-ckpt and --tracker-ckpt")
    filters = [(last_checkpoint(p) or p) if p.is_dir() else p for p in filters]  # a training folder
    tracker = (last_checkpoint(tracker) or tracker) if tracker.is_dir() else tracker
    loaded = sorted((model_from_checkpoint(p, device) for p in filters), key=lambda m: not reads_cells(m))
    return TrainedModels(
        loaded,
        model_from_checkpoint(tracker, device),
        manifest["volumes"],
        manifest["min_pt"],
        manifest["settings"],
        {"filters": [str(p) for p in filters], "tracker": str(tracker)},
    )


def reconstruct_events(
    prefixes: list[Path], models: TrainedModels, progress: bool = True
) -> Iterator[tuple[Path, pd.DataFrame, dict, dict, float]]:
    """Reconstruct each event; yields (prefix, its hits, prepared event, predictions, model seconds).

    The prepared event holds the hits in the models' volumes (with their truth when the event has it);
    the predictions are ``reco.Reconstruction``'s for those hits.
    """
    for prefix in tqdm(prefixes, desc="reconstruct", unit="event", disable=not progress):
        frames = read_event(prefix, event_parts(prefix))
        reco = models.reconstruction(prefix, "cells" in frames)
        event = prepare_event(frames, models.volumes)
        start = time.perf_counter()
        preds = reco(event)
        yield prefix, frames["hits"], event, preds, time.perf_counter() - start


def submission_rows(number: int, hits: pd.DataFrame, event: dict, preds: dict) -> pd.DataFrame:
    """``event_id, hit_id, track_id`` for every hit of the event; 0 where no track holds the hit."""
    track = pd.Series(preds["hit_track"] + 1, index=event["hit_id"])
    ids = hits["hit_id"].to_numpy()
    track_id = track.reindex(ids, fill_value=0).to_numpy(np.int64)
    return pd.DataFrame(
        {"event_id": np.full(len(ids), number, np.int64), "hit_id": ids, "track_id": track_id}
    )


def write_reconstruction(
    input_dir: str | os.PathLike,
    models: TrainedModels,
    out: str | os.PathLike,
    predictions: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict:
    """Reconstruct every event of ``input_dir`` into the submission ``out`` (written whole at the end).

    When every event has its truth, ``predictions`` (default: ``out`` with the suffix .h5) gets the
    predictions file that ``hepattn evaluate`` scores.

    Returns:
        ``submission``, ``predictions`` (None without truth), ``events``, ``hits`` and the mean
        ``model_ms_per_event`` (filter and tracker, without reading the files).
    """
    prefixes = find_events(Path(input_dir))
    if not prefixes:
        raise FileNotFoundError(f"no TrackML events (event*-hits.csv[.gz]) in {input_dir}")
    out = Path(out)
    rows, results, seconds = [], [], 0.0
    for prefix, hits, event, preds, spent in reconstruct_events(prefixes, models, progress):
        rows.append(submission_rows(event_id(prefix.name), hits, event, preds))
        results.append((prefix.name, event, preds))
        seconds += spent
    truth = all(has_truth(event) for _, event, _ in results)
    written = None
    if truth:
        attrs = {"min_pt": models.min_pt, "max_eta": 4.0, "threshold": models.settings.get("threshold", 0.5)}
        written = write_predictions(
            Path(predictions) if predictions else out.with_suffix(".h5"), results, attrs
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    submission = pd.concat(rows, ignore_index=True)
    submission.to_csv(tmp, index=False)
    tmp.replace(out)
    return {
        "submission": out,
        "predictions": written,
        "events": len(prefixes),
        "hits": len(submission),
        "model_ms_per_event": 1000 * seconds / len(prefixes),
    }
