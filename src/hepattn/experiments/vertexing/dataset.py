"""Events of fitted tracks as model inputs: the tracks (sorted by z0) in, vertices out.

Track fields (the config's input network picks among them):
- ``z0``: z0 / 100 mm; ``z0_mm``: z0 in mm, for a Fourier encoding that resolves 0.1 mm;
- ``d0``: asinh(d0 / 0.05 mm) (prompt tracks within a few tens of um, displaced ones compressed);
- ``log_sigma_z0``, ``log_sigma_d0``: log10 of the uncertainties in mm;
- ``phi``, ``eta``, ``log_pt`` (log10 GeV), ``q``;
- ``fit_{d0,z0,phi,theta,cov_d0_d0,cov_d0_z0,cov_z0_z0}``: the perigee as fitted (mm, radians; float64),
  which no input network reads: the position head fits vertices to them (``position``).
Objects: the truth vertices (``truth.truth_vertices``) with x, y, z (mm) and ``hs`` (1: hard scatter), and
``vertex_track_valid``, the tracks of each.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from hepattn.experiments.vertexing.baselines import track_pt
from hepattn.experiments.vertexing.events import VertexingEvent, read_events
from hepattn.experiments.vertexing.position import FIT_FIELDS
from hepattn.experiments.vertexing.truth import HARD_SCATTER

TRACK_FIELDS = ("z0", "z0_mm", "d0", "log_sigma_z0", "log_sigma_d0", "phi", "eta", "log_pt", "q")


def track_fields(tracks: pd.DataFrame) -> dict[str, np.ndarray]:
    """The input fields of each track (see the module docstring), float32."""
    theta = tracks.theta.to_numpy()
    fields = {
        "z0": tracks.z0.to_numpy() / 100.0,
        "z0_mm": tracks.z0.to_numpy(),
        "d0": np.arcsinh(tracks.d0.to_numpy() / 0.05),
        "log_sigma_z0": 0.5 * np.log10(tracks.cov_z0_z0.to_numpy()),
        "log_sigma_d0": 0.5 * np.log10(tracks.cov_d0_d0.to_numpy()),
        "phi": tracks.phi.to_numpy(),
        "eta": -np.log(np.tan(theta / 2)),
        "log_pt": np.log10(track_pt(tracks)),
        "q": np.sign(tracks.qop.to_numpy()),
    }
    return {k: v.astype(np.float32) for k, v in fields.items()}


def event_inputs(event: VertexingEvent, seed_weight_cap: float = 1.0) -> dict[str, torch.Tensor]:
    """One event as the batch contract's tensors, tracks in z0 order (``track_index``: the file's row).

    ``track_seed_weight``: cap / (tracks of the track's truth vertex), clipped to [1, cap] (1 off truth
    vertices), for ``SampledQueries(weight_field=...)``: in training a vertex of few tracks then gets
    about as many seeds as one of ``cap`` tracks; 1 everywhere with cap 1.
    """
    order = np.argsort(event.tracks.z0.to_numpy(), kind="stable")
    tracks = event.tracks.iloc[order]
    fields = track_fields(tracks)
    for name, values in fields.items():
        if not np.isfinite(values).all():
            row = int(np.flatnonzero(~np.isfinite(values))[0])
            raise ValueError(
                f"event {event.event_id}: track_id {int(tracks.track_id.iloc[row])} has a non-finite {name} "
                f"(its tracks part has d0={tracks.d0.iloc[row]}, cov_d0_d0={tracks.cov_d0_d0.iloc[row]}, "
                f"qop={tracks.qop.iloc[row]})"
            )
    out = {f"track_{k}": torch.from_numpy(v) for k, v in fields.items()}
    for name in FIT_FIELDS:  # the perigee as fitted, float64, for the position head's vertex fit
        out[f"track_fit_{name}"] = torch.from_numpy(tracks[name].to_numpy(np.float64, copy=True))
    out["track_valid"] = torch.ones(len(tracks), dtype=torch.bool)
    out["track_index"] = torch.from_numpy(order.astype(np.int64))
    truth = event.truth
    out["vertex_valid"] = torch.ones(len(truth), dtype=torch.bool)
    for c in "xyz":
        out[f"vertex_{c}"] = torch.from_numpy(truth[c].to_numpy(np.float32))
    out["vertex_hs"] = torch.from_numpy((truth.id.to_numpy() == HARD_SCATTER).astype(np.int64))
    owner = event.track_truth[order]
    out["vertex_track_valid"] = torch.from_numpy(truth.id.to_numpy()[:, None] == owner[None, :])
    size = pd.Series(truth.ntracks.to_numpy(), index=truth.id).reindex(owner).to_numpy(np.float64)
    weight = np.where(owner > 0, np.clip(seed_weight_cap / np.nan_to_num(size, nan=1.0), 1.0, None), 1.0)
    out["track_seed_weight"] = torch.from_numpy(weight.astype(np.float32))
    return out


class VertexingDataset(Dataset):
    """Every event of a folder of simulated events with tracks, held in memory (a few MB)."""

    def __init__(self, directory: str | Path, limit: int | None = None, seed_weight_cap: float = 1.0):
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(
                f"event folder {directory} does not exist (run `hepattn simulate --tracks`)"
            )
        events = read_events(directory)[:limit]
        self.event_ids = [e.event_id for e in events]
        load = tqdm(events, desc=f"load {directory.name}", unit="event")
        self.items = [event_inputs(e, seed_weight_cap) for e in load]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.items[i]
