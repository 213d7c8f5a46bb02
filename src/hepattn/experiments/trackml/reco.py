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
from hepattn.experiments.trackml.beamline import with_vertex_eta
from hepattn.experiments.trackml.dataset import load_event, model_inputs, save_event
from hepattn.experiments.trackml.helix import set_helix_residuals
from hepattn.experiments.trackml.mend import extend_tracks, join_fragments
from hepattn.experiments.trackml.postprocess import (
    assign_hits,
    drop_unfit_tracks,
    one_hit_per_module,
    ranking_score,
    recover_tracks,
    refine_tracks,
    suppress_duplicates,
)
from hepattn.training.module import MaskFormerModule

TRACK_FIELDS = ("pt", "eta", "phi", "vz")


def input_fields(module: MaskFormerModule) -> list[str]:
    """The hit fields the module's input networks read (their Fourier-encoded ones included)."""
    nets = module.model.input_nets
    return list(dict.fromkeys(f for net in nets for f in (*net.fields, *net.fourier)))


def _inputs(module: MaskFormerModule, event: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The module's batch of one event: the fields it reads, so that none is derived in vain."""
    batch = collate([model_inputs(event, input_fields(module))])
    return {k: v.to(module.device) for k, v in batch.items()}


@torch.no_grad()
def filter_probability(module: MaskFormerModule, event: dict[str, np.ndarray], task: str = "hit_filter"):
    """(N,) probability that each hit of ``event`` belongs to a target particle."""
    outputs = module.model(_inputs(module, event))
    return torch.sigmoid(outputs["encoder"][task]["logit"][0].float()).cpu().numpy()


def select_hits(event: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """The event restricted to the hits in ``keep`` (bool, N); particles stay, their nhits are recounted.

    Adds ``hit_index`` (the kept hits' indices in the full event) and, with truth, ``particle_nhits_all``
    (the count before the selection).
    """
    n = len(keep)
    out = {k: (v[keep] if k.startswith("hit_") and len(v) == n else v) for k, v in event.items()}
    out["hit_index"] = (
        np.flatnonzero(keep).astype(np.int64) if "hit_index" not in event else event["hit_index"][keep]
    )
    if "hit_particle" not in event:  # an event without truth
        return out
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
        seed_threshold: only kept hits with at least this filter probability seed a query
            (``SampledQueries.seed_field``); the others are still seen and assigned. 0: every kept hit
            seeds one. The decoder's cost and the candidates to sort grow with the seeds, so a pile-up
            event whose filter keeps many doubtful hits is reconstructed in a fraction of the time.
        one_hit_per_module: each candidate's mask keeps at most one hit per detector module, its
            strongest (``postprocess.one_hit_per_module``; events prepared before ``hit_module`` existed
            are taken as they are).
        join_max_hits: two tracks of at most this many hits, on no common module, that together fit a
            helix through the beam line within ``join_xy`` and ``join_z`` mm become one
            (``mend.join_fragments``: pieces of one particle in a jet core), before short tracks
            are dropped; 0: no joining.
        join_xy: largest x-y residual (mm) of a joined track.
        join_z: largest z residual (mm) of a joined track.
        extend_xy: unassigned hits are added to the tracks they extend along a helix within this x-y
            residual (mm) and ``extend_z`` (``mend.extend_tracks``), after the joining; 0: none.
        extend_z: the z residual (mm) of an extended track.
        min_hits: a track that ends up with fewer hits is dropped and its hits left unassigned (targets
            have at least 3 hits; a one- or two-hit "track" is a fragment, not a track candidate).
        min_mask_prob: so is a track whose mean mask probability over its hits is lower.
        fit_max_hits: tracks with at most this many hits must fit a helix through the beam line
            (``drop_unfit_tracks``, residuals below ``fit_max_xy`` and ``fit_max_z`` mm); 0: no fit.
        rank_fit_xy: candidates whose masks fit a helix within this x-y residual (mm) and
            ``rank_fit_z`` are considered first by the duplicate suppression (``ranking_score``); 0: no
            fit, the order is validity (times the predicted mask quality when the tracker has a quality
            head).
        rank_fit_z: the z residual (mm) of that fit.
        refine_max_removed: a track that fits no helix within ``refine_xy`` and ``refine_z`` may lose
            this many hits to fit one (``refine_tracks``); 0: tracks are left as assigned.
        refine_xy: largest x-y residual (mm) of a refined track.
        refine_z: largest z residual (mm) of a refined track.
        recover_xy: candidates that own no hits after the steps above make tracks of their unassigned
            hits when these fit a helix within this x-y residual (mm) and ``recover_z``
            (``recover_tracks``); 0: no recovery.
        recover_z: the z residual (mm) of that fit.
        second_pass: the tracker runs once more on the hits that the first pass left on no track and on
            those of its weak tracks (``weak_tracks``: at most ``second_pass_max_hits`` hits, or no helix
            within ``second_pass_xy`` and ``second_pass_z``), which are replaced by what it finds; the
            strong tracks stay. With fewer hits around them the masks of a jet core's particles merge
            less, as in the iterative track finding of CMS (arXiv 1405.6569), which removes the hits of
            the tracks it is sure of before the next iteration.
        second_pass_max_hits: tracks of the first pass with at most this many hits are redone.
        second_pass_xy: so are those that fit no helix within this x-y residual (mm) and
            ``second_pass_z``; 0: no fit.
        second_pass_z: the z residual (mm) of that fit.
        whole_hits: an event with more kept hits is reconstructed in sectors of phi of about
            ``sector_hits`` hits each (``phi_sectors``), so that memory and time grow linearly with the
            hits, not as their square; the demo's events (about 7,000 kept hits) are reconstructed whole.
        sector_hits: the core hits of a sector.
        sector_margin: hits within this many radians of a sector's core are given to it too (a track
            of pT 1 GeV turns by 0.06 rad between the beam line and the last pixel layer, so its hits lie
            within 0.03 rad of their mean phi, which decides the sector that keeps it).
        seed_margin: of a sector's hits, only those of its core and this many radians on either side seed
            queries (the tracks of 1 GeV and more that the sector keeps have their hits there); the rest
            are seen and assigned. The decoder's cost grows with the queries, so the margins cost less.
        sector_seed_threshold: in an event cut into sectors (far more hits than the demo's pile-up 20),
            only hits with at least this filter probability seed (``seed_threshold`` applies too): a
            real pile-up-200 event then takes 4-5 s instead of 11-13 s on 2 CPU cores (docs/trackml.md).
    """

    filter: MaskFormerModule
    tracker: MaskFormerModule
    threshold: float = 0.5
    track_threshold: float = 0.5
    max_overlap: float = 0.5
    num_queries: int | None = None
    seed_threshold: float = 0.0
    one_hit_per_module: bool = False
    join_max_hits: int = 0
    join_xy: float = 0.5
    join_z: float = 1.0
    extend_xy: float = 0.0
    extend_z: float = 0.6
    min_hits: int = 1
    min_mask_prob: float = 0.0
    fit_max_hits: int = 0
    fit_max_xy: float = 0.5
    fit_max_z: float = 1.0
    rank_fit_xy: float = 0.0
    rank_fit_z: float = 0.0
    refine_max_removed: int = 0
    refine_xy: float = 1.0
    refine_z: float = 2.0
    recover_xy: float = 0.0
    recover_z: float = 2.0
    second_pass: bool = False
    second_pass_max_hits: int = 3
    second_pass_xy: float = 0.3
    second_pass_z: float = 0.6
    whole_hits: int = 16_000
    sector_hits: int = 3_000
    sector_margin: float = 0.08
    seed_margin: float = 0.03
    sector_seed_threshold: float = 0.2

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
        # the vertex seen from the kept hits, as in the tracker's training; sectors and passes keep it
        kept = with_vertex_eta(select_hits(event | {"hit_filter_prob": prob}, prob >= self.threshold))
        hit_track = np.full(len(prob), -1, dtype=np.int64)
        out = {"hit_filter_prob": prob.astype(np.float32), "hit_track": hit_track}
        if not len(kept["hit_index"]):
            return out | {f"track_{f}": np.zeros(0, np.float32) for f in ("prob", *TRACK_FIELDS)}
        sectors = phi_sectors(kept["hit_phi"], self.whole_hits, self.sector_hits, self.sector_margin)
        if len(sectors) == 1:
            owner, tracks = self.passes(kept)
        else:
            owner, tracks = self.sector_tracks(kept, sectors)
        hit_track[kept["hit_index"]] = owner
        return out | {f"track_{k}": v for k, v in tracks.items()}

    def tracks(self, kept: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One pass of the tracker over the kept hits.

        Returns:
            (N,) track of each hit (0..T-1, or -1), and ``prob``, ``pt``, ``eta``, ``phi``, ``vz`` (T,)
            of the tracks.
        """
        preds = self.tracker.model.predict(self.tracker.model(self.tracker_inputs(kept), aux_heads=False))
        track_prob = preds["track_valid"]["prob"][0].float()
        candidate = (track_prob >= self.track_threshold) & preds["queries"]["valid"][0]
        logit = preds["track_hit"]["logit"][0].float()
        if self.one_hit_per_module and "hit_module" in kept:
            logit = one_hit_per_module(logit, torch.from_numpy(kept["hit_module"]).to(logit.device))
        mask, quality = logit > 0, preds["track_hit"].get("quality")
        xyz = np.stack([kept[f"hit_{c}"] for c in "xyz"], 1).astype(np.float64)
        score = ranking_score(
            track_prob, None if quality is None else quality[0], mask, candidate, xyz,
            self.rank_fit_xy, self.rank_fit_z,
        )  # fmt: skip
        keep = suppress_duplicates(score, mask, self.max_overlap)
        mend = (self.join_max_hits > 0 or self.extend_xy > 0) and "hit_module" in kept
        owner = assign_hits(logit, keep, 1 if mend else self.min_hits, self.min_mask_prob)
        if mend:  # pieces of particles first, then the short tracks are dropped
            module = kept["hit_module"]
            if self.join_max_hits:
                owner = join_fragments(owner, xyz, module, self.join_max_hits, self.join_xy, self.join_z)
            if self.extend_xy:
                owner = extend_tracks(owner, xyz, module, self.extend_xy, self.extend_z)
            size = np.bincount(owner[owner >= 0], minlength=logit.shape[0])
            owner = np.where((owner >= 0) & (size[owner.clip(0)] >= self.min_hits), owner, -1)
        if self.fit_max_hits:
            owner = drop_unfit_tracks(owner, xyz, self.fit_max_hits, self.fit_max_xy, self.fit_max_z)
        if self.refine_max_removed:
            owner = refine_tracks(
                owner, xyz, self.refine_xy, self.refine_z, self.refine_max_removed, self.min_hits
            )
        if self.recover_xy:
            owner = recover_tracks(owner, mask, score, xyz, self.recover_xy, self.recover_z, self.min_hits)
        used = np.unique(owner[owner >= 0])  # tracks that own at least min_hits hits, renumbered 0..T-1
        remap = np.full(logit.shape[0], -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        tracks = {"prob": track_prob[used].cpu().numpy().astype(np.float32)}
        for f in TRACK_FIELDS:
            tracks[f] = preds["track_params"][f][0, used].cpu().numpy().astype(np.float32)
        return np.where(owner >= 0, remap[owner.clip(0)], -1), tracks

    def passes(self, kept: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``tracks``, then with ``second_pass`` once more on the free hits and those of weak tracks.

        Returns the tracks of the first pass that are not weak, then those of the second, as ``tracks``.
        """
        owner, tracks = self.tracks(kept)
        if not self.second_pass:
            return owner, tracks
        xyz = np.stack([kept[f"hit_{c}"] for c in "xyz"], 1).astype(np.float64)
        cuts = (self.second_pass_max_hits, self.second_pass_xy, self.second_pass_z)
        weak = weak_tracks(owner, xyz, len(tracks["prob"]), *cuts)
        redo = np.flatnonzero(np.append(weak, True)[owner])  # free hits (-1) and those of weak tracks
        if len(redo) < max(self.min_hits, 3):
            return owner, tracks
        local, more = self.tracks({k: (v[redo] if k.startswith("hit_") else v) for k, v in kept.items()})
        strong = np.flatnonzero(~weak)
        remap = np.full(len(weak), -1, dtype=np.int64)
        remap[strong] = np.arange(len(strong))
        owner = np.where(owner >= 0, remap[owner.clip(0)], -1)
        owner[redo] = np.where(local >= 0, local + len(strong), -1)
        return owner, {k: np.concatenate([v[strong], more[k]]) for k, v in tracks.items()}

    def tracker_inputs(self, kept: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """The tracker's batch of the kept hits, and which of them may seed a query.

        A hit seeds when its filter probability reaches ``seed_threshold`` and, in a sector, when it lies
        in the sector's seed region (``hit_seed_region``); without either rule every hit seeds.
        """
        batch = _inputs(self.tracker, kept)
        queries = self.tracker.model.queries
        ok = np.ones(len(kept["hit_phi"]), dtype=bool)
        if self.seed_threshold:
            ok &= kept["hit_filter_prob"] >= self.seed_threshold
        ok &= kept.get("hit_seed_region", True)
        if ok.all() and not self.seed_threshold:
            if hasattr(queries, "seed_field"):
                queries.seed_field = None
            return batch
        if not hasattr(queries, "seed_field"):
            raise ValueError(f"seed_threshold and sectors need SampledQueries, not {type(queries).__name__}")
        queries.seed_field = "hit_seed_ok"
        return batch | {"hit_seed_ok": torch.from_numpy(ok)[None].to(self.tracker.device)}

    def sector_tracks(
        self, kept: dict[str, np.ndarray], sectors: list[tuple[float, float, np.ndarray]]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``tracks`` sector by sector; a sector keeps its tracks whose hits' mean phi lies in its core.

        A hit already taken by a track of an earlier sector stays there; a track left with fewer than
        ``min_hits`` hits by that is dropped.
        """
        owner = np.full(len(kept["hit_phi"]), -1, dtype=np.int64)
        found: list[dict[str, np.ndarray]] = []
        for start, width, hits in sectors:
            part = {k: (v[hits] if k.startswith("hit_") else v) for k, v in kept.items()}
            # only sure hits near the core seed: the tracks of the others' seeds would be dropped below
            around = np.mod(part["hit_phi"] - (start - self.seed_margin), 2 * np.pi)
            sure = part["hit_filter_prob"] >= self.sector_seed_threshold
            part["hit_seed_region"] = (around < width + 2 * self.seed_margin) & sure
            local, tracks = self.passes(part)
            on = local >= 0
            phi, size = part["hit_phi"][on], len(tracks["prob"])
            mean_phi = np.arctan2(
                np.bincount(local[on], np.sin(phi), size), np.bincount(local[on], np.cos(phi), size)
            )
            for t in np.flatnonzero(np.mod(mean_phi - start, 2 * np.pi) < width):
                take = hits[(local == t) & (owner[hits] < 0)]
                if len(take) >= max(self.min_hits, 1):
                    owner[take] = len(found)
                    found.append({k: v[t : t + 1] for k, v in tracks.items()})
        keys = ("prob", *TRACK_FIELDS)
        empty = np.zeros(0, np.float32)
        return owner, {k: np.concatenate([f[k] for f in found]) if found else empty for k in keys}


def weak_tracks(
    owner: np.ndarray, xyz: np.ndarray, num: int, max_hits: int, max_xy: float, max_z: float
) -> np.ndarray:
    """(num,) which of the tracks 0..num-1 of ``owner`` (N,) hold at most ``max_hits`` hits or fit no helix.

    A track fits when its hits lie within ``max_xy`` and ``max_z`` mm of a helix through the beam line
    (``set_helix_residuals``; a particle's own hits do within a tenth of a millimetre above 2 GeV, a
    track with another particle's hits mostly does not); ``max_xy`` 0: no fit.
    """
    on = np.flatnonzero(owner >= 0)
    weak = np.bincount(owner[on], minlength=num) <= max_hits
    if max_xy > 0 and len(on):
        xy, z = set_helix_residuals(torch.from_numpy(owner[on]), torch.from_numpy(on), num, xyz)
        weak |= (torch.maximum(xy / max_xy, z / max_z) >= 1.0).numpy()
    return weak


def phi_sectors(
    phi: np.ndarray, whole_hits: int, sector_hits: int, margin: float
) -> list[tuple[float, float, np.ndarray]]:
    """Split the hits of a large event into sectors of phi of about ``sector_hits`` core hits each.

    The tracker's cost grows with the square of the hits it sees (one query per hit, each with a mask
    over all of them), so an event of more than ``whole_hits`` hits is cut into n equal-count sectors
    in phi; each sector is reconstructed from the hits of its core and of ``margin`` radians on either
    side, so that a track crossing a border is whole in the sector that keeps it.

    Returns:
        (core start, core width, indices of the sector's hits) per sector; one sector with every hit
        (start -pi, width 2 pi) when there are at most ``whole_hits`` hits.
    """
    if len(phi) <= whole_hits:
        return [(-np.pi, 2 * np.pi, np.arange(len(phi)))]
    n = max(int(np.ceil(len(phi) / max(sector_hits, 1))), 2)
    edges = np.quantile(phi, np.arange(n) / n)
    widths = np.mod(np.roll(edges, -1) - edges, 2 * np.pi)
    widths[-1] = 2 * np.pi - widths[:-1].sum()
    sectors = []
    for start, width in zip(edges, widths, strict=True):
        near = np.mod(phi - (start - margin), 2 * np.pi) < width + 2 * margin
        sectors.append((float(start), float(width), np.flatnonzero(near)))
    return sectors
