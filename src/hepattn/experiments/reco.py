"""The two-stage reconstruction: hit filter, then tracker, on prepared events.

``filter_directory`` writes the hits that the filter keeps as prepared events again, which is what the
tracker trains on. ``Reconstruction`` runs both models on a whole event and returns one hit-to-track
assignment: every hit goes to at most one track, as in a TrackML submission, and every metric is
computed from that assignment on the full event (so hits and particles lost by the filter count).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hepattn.data.batch import collate
from hepattn.data.dataset import TargetCuts, load_event, save_event, to_model_inputs
from hepattn.training.module import MaskFormerModule


def _inputs(module: MaskFormerModule, event: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    fields = module.model.input_net.fields
    batch = collate([to_model_inputs(event, TargetCuts(), fields)])
    return {k: v.to(module.device) for k, v in batch.items()}


@torch.no_grad()
def filter_probability(module: MaskFormerModule, event: dict[str, np.ndarray], task: str = "hit_filter"):
    """(N,) probability that each hit of ``event`` belongs to a target particle."""
    outputs = module.model(_inputs(module, event))
    return torch.sigmoid(outputs["encoder"][task]["logit"][0].float()).cpu().numpy()


def select_hits(event: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """The event restricted to the hits in ``keep`` (bool, N); particles stay, their nhits are recounted.

    Adds ``hit_index`` (the kept hits' indices in the full event) and ``particle_nhits_all`` (the count
    before the selection).
    """
    n = len(keep)
    out = {k: (v[keep] if k.startswith("hit_") and len(v) == n else v) for k, v in event.items()}
    out["hit_index"] = (
        np.flatnonzero(keep).astype(np.int64) if "hit_index" not in event else event["hit_index"][keep]
    )
    owner = out["hit_particle"]
    out["particle_nhits_all"] = event.get("particle_nhits_all", event["particle_nhits"])
    out["particle_nhits"] = np.bincount(owner[owner >= 0], minlength=len(event["particle_pt"])).astype(
        np.float32
    )
    return out


def filter_directory(
    module: MaskFormerModule, in_dir: str | Path, out_dir: str | Path, threshold: float
) -> list[Path]:
    """Apply the filter to every prepared event of ``in_dir``; write the kept hits to ``out_dir``.

    Each written event also holds ``hit_filter_prob`` of its kept hits.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    files = sorted(in_dir.glob("event*.npz"))
    if not files:
        raise FileNotFoundError(f"no prepared events (event*.npz) in {in_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in tqdm(files, desc=f"filter {in_dir.name}", unit="event"):
        event = load_event(path)
        prob = filter_probability(module, event)
        event["hit_filter_prob"] = prob.astype(np.float32)
        save_event(out_dir / path.name, select_hits(event, prob >= threshold))
        written.append(out_dir / path.name)
    return written


def suppress_duplicates(prob: torch.Tensor, mask: torch.Tensor, max_overlap: float) -> torch.Tensor:
    """(Q,) tracks to keep: non-maximum suppression on hit sets.

    Greedily by probability, a track whose hits are already claimed by kept tracks for more than
    ``max_overlap`` of its hits is a duplicate and dropped.

    Args:
        prob: (Q,) validity probability; tracks with prob < 0 are never kept.
        mask: (Q, N) hits of each track.
        max_overlap: largest fraction of a kept track's hits that earlier kept tracks may hold.
    """
    keep = torch.zeros_like(prob, dtype=torch.bool)
    claimed = torch.zeros(mask.shape[-1], dtype=torch.bool, device=mask.device)
    for q in torch.argsort(prob, descending=True):
        hits = mask[q]
        size = int(hits.sum())
        if prob[q] < 0 or size == 0:
            continue
        if int((hits & claimed).sum()) <= max_overlap * size:
            keep[q] = True
            claimed |= hits
    return keep


def assign_hits(
    logit: torch.Tensor, keep: torch.Tensor, min_hits: int = 1, min_mask_prob: float = 0.0
) -> np.ndarray:
    """(N,) for each hit the kept track that claims it most strongly (logit > 0), else -1.

    Args:
        logit: (Q, N) track-hit mask logits.
        keep: (Q,) tracks that survived selection and duplicate suppression.
        min_hits: a track left with fewer hits than this gives them up (they become -1).
        min_mask_prob: so does a track whose mean mask probability over its hits is lower (the mask
            score of Mask2Former's inference, arXiv 2112.01527: an unsure mask is an impure track).
    """
    best, owner = logit.masked_fill(~keep.unsqueeze(-1), float("-inf")).max(dim=0)
    owner = torch.where(best > 0, owner, -1).cpu().numpy()
    claimed = owner >= 0
    size = np.bincount(owner[claimed], minlength=logit.shape[0])
    prob = torch.sigmoid(best.float()).cpu().numpy()
    total = np.bincount(owner[claimed], weights=prob[claimed], minlength=logit.shape[0])
    mean_prob = total / np.maximum(size, 1)
    good = (size >= min_hits) & (mean_prob >= min_mask_prob)
    return np.where(claimed & good[owner.clip(0)], owner, -1)


def helix_residuals(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """Largest residuals (mm) of hits (mm) from a helix through the beam line.

    In x-y a circle through the origin, x^2 + y^2 = 2 a x + 2 b y, fitted by linear least squares; in
    (arc length s, z) a straight line. Returns the largest distance of a hit from the circle and the
    largest z residual. A track built from two particles fits neither; a particle from a displaced
    vertex does not fit the circle either.
    """
    r2 = x**2 + y**2
    (a, b), *_ = np.linalg.lstsq(np.stack([2 * x, 2 * y], 1), r2, rcond=None)
    radius = np.hypot(a, b)
    xy = np.abs(np.hypot(x - a, y - b) - radius)
    s = 2 * radius * np.arcsin(np.clip(np.sqrt(r2) / (2 * radius), -1.0, 1.0))
    line = np.stack([np.ones_like(s), s], 1)
    coef, *_ = np.linalg.lstsq(line, z, rcond=None)
    return float(xy.max()), float(np.abs(z - line @ coef).max())


def drop_unfit_tracks(
    owner: np.ndarray, xyz: np.ndarray, max_hits: int, max_xy: float, max_z: float
) -> np.ndarray:
    """``owner`` (N,) with the hits of short tracks that fit no helix (``helix_residuals``) set to -1.

    Args:
        owner: (N,) track of each hit, -1 for none.
        xyz: (N, 3) hit positions in mm.
        max_hits: only tracks with at most this many hits are checked (long tracks are rarely merged).
        max_xy: largest allowed x-y residual in mm.
        max_z: largest allowed z residual in mm.
    """
    out = owner.copy()
    tracks, size = np.unique(owner[owner >= 0], return_counts=True)
    for track in tracks[size <= max_hits]:
        hits = owner == track
        xy, z = helix_residuals(*xyz[hits].astype(np.float64).T)
        if xy >= max_xy or z >= max_z:
            out[hits] = -1
    return out


@dataclass
class Reconstruction:
    """Filter then tracker on one prepared event; each hit is assigned to at most one track.

    Attributes:
        filter: the trained hit filter (encoder-only module with a ``hit_filter`` task).
        tracker: the trained tracker (with ``track_valid``, ``track_hit`` and ``track_params`` tasks).
        threshold: filter probability above which a hit goes to the tracker.
        track_threshold: validity probability above which a query is a track candidate.
        max_overlap: duplicate suppression (``suppress_duplicates``) among the candidates.
        num_queries: queries of the tracker at inference (None: as the query maker decides;
            ``SampledQueries`` seed one query per kept hit); dynamic queries take the seed head's best
            constituents, so more queries cover more particles.
        min_hits: a track that ends up with fewer hits is dropped and its hits left unassigned (targets
            have at least 3 hits; a one- or two-hit "track" is a fragment, not a track candidate).
        min_mask_prob: so is a track whose mean mask probability over its hits is lower.
        fit_max_hits: tracks with at most this many hits must fit a helix through the beam line
            (``drop_unfit_tracks``, residuals below ``fit_max_xy`` and ``fit_max_z`` mm); 0: no fit.
    """

    filter: MaskFormerModule
    tracker: MaskFormerModule
    threshold: float = 0.5
    track_threshold: float = 0.5
    max_overlap: float = 0.5
    num_queries: int | None = None
    min_hits: int = 1
    min_mask_prob: float = 0.0
    fit_max_hits: int = 0
    fit_max_xy: float = 0.5
    fit_max_z: float = 1.0

    def __post_init__(self):
        if self.num_queries is not None:
            self.tracker.model.queries.num_queries = self.num_queries

    @torch.no_grad()
    def __call__(self, event: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Predictions for one event.

        Returns:
            ``hit_filter_prob`` (N,), ``hit_track`` (N,) track index or -1, ``track_prob`` (T,) and
            ``track_{pt,eta,phi,vz}`` (T,) for the T tracks that own at least one hit.
        """
        prob = filter_probability(self.filter, event)
        kept = select_hits(event | {"hit_filter_prob": prob}, prob >= self.threshold)
        hit_track = np.full(len(prob), -1, dtype=np.int64)
        out = {"hit_filter_prob": prob.astype(np.float32), "hit_track": hit_track}
        fields = ("pt", "eta", "phi", "vz")
        if not len(kept["hit_index"]):
            return out | {f"track_{f}": np.zeros(0, np.float32) for f in ("prob", *fields)}
        preds = self.tracker.model.predict(self.tracker.model(_inputs(self.tracker, kept)))
        track_prob = preds["track_valid"]["prob"][0].float()
        candidate = (track_prob >= self.track_threshold) & preds["queries"]["valid"][0]
        logit = preds["track_hit"]["logit"][0].float()
        keep = suppress_duplicates(track_prob.masked_fill(~candidate, -1.0), logit > 0, self.max_overlap)
        owner = assign_hits(logit, keep, self.min_hits, self.min_mask_prob)
        if self.fit_max_hits:
            xyz = np.stack([kept[f"hit_{c}"] for c in "xyz"], 1)
            owner = drop_unfit_tracks(owner, xyz, self.fit_max_hits, self.fit_max_xy, self.fit_max_z)
        used = np.unique(owner[owner >= 0])  # tracks that own at least min_hits hits, renumbered 0..T-1
        remap = np.full(logit.shape[0], -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        hit_track[kept["hit_index"]] = np.where(owner >= 0, remap[owner.clip(0)], -1)
        out["track_prob"] = track_prob[used].cpu().numpy().astype(np.float32)
        for f in fields:
            out[f"track_{f}"] = preds["track_params"][f][0, used].cpu().numpy().astype(np.float32)
        return out
