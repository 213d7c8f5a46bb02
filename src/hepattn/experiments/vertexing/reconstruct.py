"""The model's outputs to vertices: one candidate per seed track, duplicates removed, positions fitted.

Every track seeds a query; the seeds of one vertex all describe it. Candidates (valid, with at least two
tracks in their mask) are taken best first (validity x predicted mask IoU); each keeps the tracks of its
mask that no better candidate took, and is dropped when fewer than two remain or when it would keep less
than ``min_kept`` of its mask (a duplicate; 0.3, chosen on the demo's validation events, where the model
then makes as many vertices per event as AMVF: 46 at pile-up 60, against 42 with 0.5). A kept vertex's
position and its covariance are the adaptive fit of its tracks (``fit.adaptive_fit``), whose track weights
start from the position head's when the model has one (``position.VertexPositionTask``; the shipped config
has none: on the demo's validation events the head's weights made the z resolution worse, docs/vertexing.md);
its score, for the hard-scatter choice, is the hard-scatter head's probability.
"""

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from hepattn.data.batch import collate
from hepattn.experiments.vertexing.baselines import Vertices, vertex_frame
from hepattn.experiments.vertexing.dataset import event_inputs
from hepattn.experiments.vertexing.events import VertexingEvent
from hepattn.experiments.vertexing.fit import adaptive_fit
from hepattn.experiments.vertexing.position import FIT_FIELDS

MIN_KEPT = 0.3


def select(valid: np.ndarray, quality: np.ndarray, mask: np.ndarray, min_kept: float = MIN_KEPT):
    """(N,) each track's candidate (a query index) or -1; valid and quality are (Q,), mask is (Q, N)."""
    owner = np.full(mask.shape[1], -1, dtype=np.int64)
    size = mask.sum(axis=1)
    for q in np.argsort(-(valid * quality), kind="stable"):
        if valid[q] < 0.5 or size[q] < 2:
            continue
        free = mask[q] & (owner < 0)
        if free.sum() >= 2 and free.sum() >= min_kept * size[q]:
            owner[free] = q
    return owner


@torch.no_grad()
def reconstruct(
    model, events: list[VertexingEvent], names: dict[str, str] | None = None, min_kept: float = MIN_KEPT
) -> list[Vertices]:
    """Run a trained ``MaskFormer`` (eval mode) on each event and turn its outputs into ``Vertices``.

    ``names``: the task names of the config (valid, mask, hard-scatter, position), default
    ``vertex_valid``, ``vertex_track``, ``vertex_hs`` and ``vertex_position``.
    """
    defaults = {
        "valid": "vertex_valid",
        "mask": "vertex_track",
        "hs": "vertex_hs",
        "position": "vertex_position",
    }
    names = defaults | (names or {})
    out = []
    for event in tqdm(events, desc="reconstruct", unit="event"):
        inputs = event_inputs(event)
        preds = model.predict(model(collate([inputs]), aux_heads=False))
        valid = preds[names["valid"]]["prob"][0].numpy()
        mask_preds = preds[names["mask"]]
        mask = mask_preds["mask"][0].numpy()
        quality = mask_preds["quality"][0].numpy() if "quality" in mask_preds else np.ones(len(valid))
        hs = preds[names["hs"]]["prob"][0, :, 1].numpy()
        weight = preds[names["position"]]["weight"][0].numpy() if names["position"] in preds else None
        owner = select(valid, quality, mask, min_kept)
        out.append(_vertices(event.tracks, inputs["track_index"].numpy(), owner, hs, weight))
    return out


def _vertices(
    tracks: pd.DataFrame, index: np.ndarray, owner: np.ndarray, hs: np.ndarray, weight: np.ndarray | None
) -> Vertices:
    """Vertices of the kept candidates; inputs are in z0 order, ``index`` is each one's row of ``tracks``.

    ``owner`` (N,) each input's candidate or -1; ``weight`` (Q, N) the position head's track weights, or
    None.
    """
    queries = np.unique(owner[owner >= 0])
    track_vertex = np.zeros(len(tracks), dtype=np.int64)
    positions, sigmas = np.zeros((len(queries), 3)), np.zeros((len(queries), 3))
    for number, q in enumerate(queries, start=1):
        members = np.flatnonzero(owner == q)
        rows = tracks.iloc[index[members]]
        track_vertex[index[members]] = number
        prior = np.ones(len(members)) if weight is None else weight[q, members]
        positions[number - 1], cov, _ = adaptive_fit({f: rows[f].to_numpy() for f in FIT_FIELDS}, prior)
        sigmas[number - 1] = np.sqrt(np.diag(cov))
    scores = hs[queries].astype(np.float64)
    return Vertices(vertex_frame(positions, scores, sigmas), track_vertex)
