"""From a TrackML event to the model's input dict.

``prepare_event`` turns the hits (and cells, particles and truth, when present) of one event into
plain numpy arrays: per-hit features and, with truth, per-particle targets and the hit-particle
assignment. That is
what ``hepattn prep`` caches, so training never parses CSV. ``TrackMLDataset`` loads the cache and
applies the selection cuts, giving one ``data.batch`` event dict per item; ``model_inputs`` is the
part of it that needs no truth (what ``hepattn reconstruct`` gives the models).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from hepattn.data import kinematics as kin
from hepattn.experiments.trackml.beamline import with_vertex_eta

HIT_FEATURES = ("x", "y", "z", "r", "phi", "eta", "theta", "u", "v")
CELL_FEATURES = ("ncells", "charge", "extent_u", "extent_v")
# 1 where the event has its cells file, 0 where not (the cell features are then 0): a model that reads
# it works on events with and without cells (trained with ``cell_dropout``)
CELL_FLAG = "has_cells"
FILTER_FEATURES = ("filter_prob",)  # in events written by the hit filter (experiments.trackml.reco)
# computed from the hits given to the model: pseudorapidity seen from the event's vertex (beamline.py)
VERTEX_FEATURES = ("eta_pv",)
KNOWN_FEATURES = HIT_FEATURES + CELL_FEATURES + (CELL_FLAG,) + FILTER_FEATURES + VERTEX_FEATURES
PARTICLE_FIELDS = ("pt", "eta", "phi", "q", "vz", "nhits")

# Named scalings that bring every feature to order one (lengths in m, conformal in 1/m ...).
FEATURE_SCALES = {"x": 1e-3, "y": 1e-3, "z": 1e-3, "r": 1e-3, "u": 1e3 / 30, "v": 1e3 / 30, "charge": 1.0}


def hit_features(hits: pd.DataFrame) -> dict[str, np.ndarray]:
    """Geometric features of each hit, in TrackML units (mm)."""
    x, y, z = (hits[c].to_numpy(np.float64) for c in ("x", "y", "z"))
    r = kin.radius(x, y)
    u, v = kin.conformal(x, y)
    feats = {
        "x": x,
        "y": y,
        "z": z,
        "r": r,
        "phi": kin.phi(x, y),
        "eta": kin.eta(r, z),
        "theta": kin.theta(r, z),
    }
    return {k: a.astype(np.float32) for k, a in (feats | {"u": u, "v": v}).items()}


def module_key(hits: pd.DataFrame) -> np.ndarray:
    """(N,) one integer per detector module of each hit, from its volume_id, layer_id and module_id."""
    volume, layer, module = (hits[c].to_numpy(np.int64) for c in ("volume_id", "layer_id", "module_id"))
    return (volume * 100 + layer) * 100_000 + module


def cell_features(hits: pd.DataFrame, cells: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per-hit cluster shape: number of cells, summed charge, extent along the two channels."""
    groups = cells.groupby("hit_id")
    stats = pd.DataFrame(
        {
            "ncells": groups.size(),
            "charge": groups["value"].sum(),
            "extent_u": groups["ch0"].max() - groups["ch0"].min() + 1,
            "extent_v": groups["ch1"].max() - groups["ch1"].min() + 1,
        }
    ).reindex(hits["hit_id"].to_numpy(), fill_value=0)
    return {k: stats[k].to_numpy(np.float32) for k in CELL_FEATURES}


def particle_fields(particles: pd.DataFrame) -> dict[str, np.ndarray]:
    """Target properties of each particle at production."""
    px, py, pz = (particles[c].to_numpy(np.float64) for c in ("px", "py", "pz"))
    pt = kin.pt(px, py)
    return {
        "pt": pt.astype(np.float32),
        "eta": kin.eta(pt, pz).astype(np.float32),
        "phi": kin.phi(px, py).astype(np.float32),
        "q": particles["q"].to_numpy(np.float32),
        "vz": particles["vz"].to_numpy(np.float32),
    }


def has_truth(frames: dict) -> bool:
    """Whether an event (frames as read, or a prepared event) carries its truth."""
    return ("truth" in frames and "particles" in frames) or "hit_particle" in frames


def prepare_event(frames: dict[str, pd.DataFrame], volumes: list[int] | None = None) -> dict[str, np.ndarray]:
    """The arrays of one event: hits in ``volumes`` with features, and their truth when it is there.

    Args:
        frames: TrackML parts as read by ``data.trackml.read_event``: hits, and optionally cells, and
            particles with truth (both or neither: a test event has hits only).
        volumes: detector volumes to keep (e.g. the pixel volumes 7, 8, 9); None keeps all.

    Returns:
        ``hit_{feature}`` (N,), ``hit_id`` (N,) and ``hit_module`` (N,) (``module_key``). With truth
        also ``hit_particle`` (N,), the index into the particles (-1 for noise or a particle absent from
        the particle table), ``hit_weight`` (N,) (the TrackML score's truth weight),
        ``particle_{field}`` (P,) including ``nhits`` counted in
        the selected volumes, and ``particle_id`` (P,).
    """
    if ("truth" in frames) != ("particles" in frames):
        given = "truth" if "truth" in frames else "particles"
        raise ValueError(f"an event with {given} needs {'particles' if given == 'truth' else 'truth'} too")
    hits = frames["hits"]
    if "truth" in frames:
        hits = hits.merge(frames["truth"][["hit_id", "particle_id", "weight"]], on="hit_id", how="left")
    if volumes is not None:
        hits = hits[hits["volume_id"].isin(volumes)]
    out = {f"hit_{k}": a for k, a in hit_features(hits).items()}
    if "cells" in frames:
        out |= {f"hit_{k}": a for k, a in cell_features(hits, frames["cells"]).items()}
    out["hit_id"] = hits["hit_id"].to_numpy(np.int64)
    out["hit_module"] = module_key(hits)
    if "truth" not in frames:
        return out
    particles = frames["particles"].reset_index(drop=True)
    index = pd.Series(np.arange(len(particles)), index=particles["particle_id"].to_numpy())
    owner = hits["particle_id"].map(index).fillna(-1).to_numpy(np.int64)
    out["hit_particle"] = owner
    out["hit_weight"] = hits["weight"].fillna(0).to_numpy(np.float32)  # TrackML score truth weight
    out |= {f"particle_{k}": a for k, a in particle_fields(particles).items()}
    out["particle_nhits"] = np.bincount(owner[owner >= 0], minlength=len(particles)).astype(np.float32)
    out["particle_id"] = particles["particle_id"].to_numpy(np.int64)
    return out


@dataclass(frozen=True)
class TargetCuts:
    """Which particles are reconstruction targets (reconstructable particles)."""

    min_pt: float = 1.0  # GeV
    max_eta: float = 4.0
    min_hits: int = 3  # in the selected volumes

    def select(self, event: dict[str, np.ndarray]) -> np.ndarray:
        return (
            (event["particle_pt"] >= self.min_pt)
            & (np.abs(event["particle_eta"]) <= self.max_eta)
            & (event["particle_nhits"] >= self.min_hits)
        )


def seed_hits(event: dict[str, np.ndarray], target_index: np.ndarray) -> np.ndarray:
    """(N,) True on the hit of each target particle closest to the beam line (its first hit)."""
    owner, r = event["hit_particle"], event["hit_r"]
    seed = np.zeros(len(owner), dtype=bool)
    for p in target_index:
        hits = np.flatnonzero(owner == p)
        if len(hits):
            seed[hits[np.argmin(r[hits])]] = True
    return seed


def seed_weights(
    event: dict[str, np.ndarray], is_target: np.ndarray, min_pt: float, cap: float
) -> np.ndarray:
    """(N,) sampling weight of each hit as a training seed: its target's pT over ``min_pt``, in [1, cap].

    Hits of no target weigh 1. High-pT targets are few (a few of the 320 seeds of an event) and sit in
    jet cores, where masks merge neighbours; weighting gives them more queries, hence more training signal.
    """
    owner = event["hit_particle"]
    weight = np.ones(len(owner), dtype=np.float32)
    on_target = owner >= 0
    on_target[on_target] = is_target[owner[on_target]]
    pt = event["particle_pt"][owner[on_target]]
    weight[on_target] = np.clip(pt / min_pt, 1.0, cap)
    return weight


def with_cell_flag(event: dict[str, np.ndarray], drop: bool = False) -> dict[str, np.ndarray]:
    """``event`` with ``hit_has_cells``: 1 with its cell features, else 0 with the cell features 0.

    With ``drop`` the event is treated as one without cells (``cell_dropout`` in training).
    """
    flag = f"hit_{CELL_FLAG}"
    if flag in event and not drop:
        return event
    n = len(event["hit_phi"])
    has = not drop and all(f"hit_{f}" in event for f in CELL_FEATURES)
    out = dict(event)
    if not has:
        out |= {f"hit_{f}": np.zeros(n, np.float32) for f in CELL_FEATURES}
    out[flag] = np.full(n, float(has), np.float32)
    return out


def model_inputs(
    event: dict[str, np.ndarray], hit_fields: list[str] | None = None
) -> dict[str, torch.Tensor]:
    """What the model reads of one event: the scaled hit fields and ``hit_valid``; no truth needed.

    The hit fields are ``hit_fields`` (plus phi), or by default every known feature the event has; the
    model's input network reads the ones its config names. The cell features are always there, 0 with
    ``hit_has_cells`` 0 when the event has no cells (``with_cell_flag``): a model that reads cells but
    not that flag must not be given such events (``submission.needs_cells``). ``hit_eta_pv``, when
    asked for (or with every feature), is computed from the event's hits if it is not there
    (``beamline.with_vertex_eta``; a pile-up-200 event's takes 0.4 s, which a filter need not spend).
    """
    event = with_cell_flag(event)
    if hit_fields is None or "eta_pv" in hit_fields:
        event = with_vertex_eta(event)
    if hit_fields is None:
        hit_fields = [f for f in KNOWN_FEATURES if f"hit_{f}" in event]
    fields = dict.fromkeys([*hit_fields, "phi"])  # phi is always there: the model sorts by it
    out = {
        f"hit_{f}": torch.from_numpy(event[f"hit_{f}"] * np.float32(FEATURE_SCALES.get(f, 1.0)))
        for f in fields
    }
    out["hit_valid"] = torch.ones(len(event["hit_phi"]), dtype=torch.bool)
    return out


def to_model_inputs(
    event: dict[str, np.ndarray],
    cuts: TargetCuts,
    hit_fields: list[str] | None = None,
    all_particles: bool = False,
    seed_weight_cap: float | None = None,
    drop_cells: bool = False,
) -> dict[str, torch.Tensor]:
    """One event with its truth as a ``data.batch`` dict: ``model_inputs``, targets, masks and labels.

    The objects (``particle_*``) are the target particles (those passing ``cuts``), or with
    ``all_particles`` every particle with a hit in the event; ``particle_target`` flags the targets.
    With ``seed_weight_cap`` also ``hit_seed_weight`` (``seed_weights``), for seed sampling in training;
    with ``drop_cells`` the event is given as if it had no cells file.
    """
    is_target = cuts.select(event)
    owner = event["hit_particle"]
    if all_particles:
        has_hit = np.bincount(owner[owner >= 0], minlength=len(is_target)) > 0
        objects = np.flatnonzero(has_hit | is_target)
    else:
        objects = np.flatnonzero(is_target)
    target = np.flatnonzero(is_target)
    out = model_inputs(with_cell_flag(event, drop_cells), hit_fields)
    out["hit_on_target"] = torch.from_numpy(np.isin(owner, target))
    out["hit_seed"] = torch.from_numpy(seed_hits(event, target))
    if seed_weight_cap is not None:
        out["hit_seed_weight"] = torch.from_numpy(
            seed_weights(event, is_target, cuts.min_pt, seed_weight_cap)
        )
    out["particle_valid"] = torch.ones(len(objects), dtype=torch.bool)
    out["particle_target"] = torch.from_numpy(is_target[objects])
    for f in PARTICLE_FIELDS:
        out[f"particle_{f}"] = torch.from_numpy(event[f"particle_{f}"][objects])
    out["particle_hit_valid"] = torch.from_numpy(owner[None, :] == objects[:, None])
    return out


def save_event(path: Path, event: dict[str, np.ndarray]) -> None:
    """Write a prepared event atomically (temp file, then rename) as an uncompressed .npz."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **event)
    tmp.replace(path)


def load_event(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


class TrackMLDataset(Dataset):
    """Prepared events (``*.npz`` from ``hepattn prep``) as model input dicts."""

    def __init__(
        self,
        directory: str | Path,
        hit_fields: list[str] | None = None,
        cuts: TargetCuts | None = None,
        limit=None,
        all_particles: bool = False,
        seed_weight_cap: float | None = None,
        cell_dropout: float = 0.0,
    ):
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(
                f"prepared-event directory {directory} does not exist (run `hepattn prep`)"
            )
        self.files = sorted(directory.glob("event*.npz"))[:limit]
        if not self.files:
            raise FileNotFoundError(f"no prepared events (event*.npz) in {directory}")
        unknown = set(hit_fields or []) - set(KNOWN_FEATURES)
        if unknown:
            raise ValueError(f"unknown hit fields {sorted(unknown)}; known: {KNOWN_FEATURES}")
        self.hit_fields = None if hit_fields is None else list(hit_fields)
        self.cuts = cuts or TargetCuts()
        self.all_particles = all_particles
        self.seed_weight_cap = seed_weight_cap
        if not 0.0 <= cell_dropout <= 1.0:
            raise ValueError(f"cell_dropout is a probability, got {cell_dropout}")
        self.cell_dropout = cell_dropout

    def __len__(self) -> int:
        return len(self.files)

    def num_hits(self) -> list[int]:
        """Hits of each event (what a step's cost grows with)."""
        sizes = []
        for path in self.files:
            with np.load(path) as data:
                sizes.append(len(data["hit_x"]))
        return sizes

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        event = load_event(self.files[i])
        if not has_truth(event):
            raise ValueError(
                f"{self.files[i]} has no truth (its event had no particles and truth files): "
                "it can be reconstructed (`hepattn reconstruct`), not trained or tested on"
            )
        drop = self.cell_dropout > 0 and float(torch.rand(())) < self.cell_dropout  # seeded by the trainer
        return to_model_inputs(
            event, self.cuts, self.hit_fields, self.all_particles, self.seed_weight_cap, drop
        )
