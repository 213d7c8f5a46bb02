"""``hepattn evaluate PREDICTIONS``: the metrics of a predictions file, as a table, JSON and plots.

Everything is computed on the full events (before the hit filter) from the one hit-to-track
assignment that the submission CSV also holds. ``fake_rate`` is the papers' (arXiv 2411.07149,
HEPTv2): among the tracks whose reconstructed pT and eta pass the targets' cuts; ``fake_rate_all`` is
among all tracks. Definitions: docs/metrics.md.
"""

import os
from pathlib import Path

import numpy as np
import torch

from hepattn.data.jets import antikt_jets, collision, nearest_jet_dr
from hepattn.experiments.trackml.dataset import TargetCuts
from hepattn.experiments.trackml.figures import write_figures
from hepattn.experiments.trackml.predictions import read_predictions
from hepattn.metrics.binned import concat_tables, track_table
from hepattn.metrics.filter import retention_counts, retention_rate, roc_auc
from hepattn.metrics.reco import track_rates, trackml_score


def event_masks(ev: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, T, N) hits of each predicted track and (1, P, N) hits of each particle, from the arrays."""
    n = len(ev["hit_track"])
    num_tracks = int(ev["hit_track"].max()) + 1 if n else 0
    track = torch.from_numpy(ev["hit_track"])
    owner = torch.from_numpy(ev["hit_particle"])
    pred = track.unsqueeze(0) == torch.arange(num_tracks).unsqueeze(1)
    true = owner.unsqueeze(0) == torch.arange(len(ev["particle_pt"])).unsqueeze(1)
    return pred.unsqueeze(0), true.unsqueeze(0)


def targets(ev: dict[str, np.ndarray], cuts: TargetCuts) -> np.ndarray:
    """(P,) reconstructable particles of the full event (hits counted before the filter)."""
    return cuts.select({k: ev[k] for k in ("particle_pt", "particle_eta", "particle_nhits")})


def jet_distance(ev: dict[str, np.ndarray], radius: float = 0.4, min_pt: float = 20.0) -> np.ndarray:
    """(P,) dR of each particle to the nearest anti-kt jet of the hard scatter's particles (pT > 20 GeV).

    The jets cluster every particle of the hard-scatter collision in the particle table (charged and
    neutral, no neutrinos); inf when the event has no such jet.
    """
    hard = collision(ev["particle_id"]) == 1
    jets = antikt_jets(
        ev["particle_pt"][hard], ev["particle_eta"][hard], ev["particle_phi"][hard], radius, min_pt
    )
    return nearest_jet_dr(ev["particle_eta"], ev["particle_phi"], jets["eta"], jets["phi"])


def event_table(ev: dict[str, np.ndarray], cuts: TargetCuts) -> dict:
    """Track counts and rows (``metrics.binned.track_table``), filter counts and the TrackML score."""
    pred, true = event_masks(ev)
    target = targets(ev, cuts)
    params = ("pt", "eta", "phi", "vz")
    truth = {k: ev[f"particle_{k}"][None] for k in params} | {"jet_dr": jet_distance(ev)[None]}
    table = track_table(
        torch.ones(pred.shape[:2], dtype=torch.bool),
        pred,
        true.any(-1),
        true,
        torch.ones(1, pred.shape[-1], dtype=torch.bool),
        truth,
        {k: ev[f"track_{k}"][None] for k in params},
        torch.from_numpy(target).unsqueeze(0),
    )
    label = np.isin(ev["hit_particle"], np.flatnonzero(target))
    kept = ev["hit_kept"]
    retained = retention_counts(kept, ev["hit_particle"], target, cuts.min_hits)
    table["counts"] |= {
        "hits": len(kept),
        "hits_kept": int(kept.sum()),
        "target_hits": int(label.sum()),
        "target_hits_kept": int((label & kept).sum()),
        "targets_retained": retained["retained"],
    }
    particle_id = np.where(ev["hit_particle"] >= 0, ev["particle_id"][ev["hit_particle"].clip(0)], 0)
    table["trackml_score"] = trackml_score(ev["hit_track"], particle_id, ev["hit_weight"])
    table["filter_label"] = label
    return table


def reco_passing(tracks: dict[str, np.ndarray], cuts: TargetCuts) -> np.ndarray:
    """Tracks whose reconstructed pT and eta pass the targets' cuts: the papers' fake-rate denominator."""
    if "reco_pt" not in tracks:
        return np.zeros(len(tracks["fake"]), dtype=bool)
    return (tracks["reco_pt"] >= cuts.min_pt) & (np.abs(tracks["reco_eta"]) <= cuts.max_eta)


def binned_efficiency(
    particles: dict[str, np.ndarray], low: float, high: float, var: str = "pt"
) -> float | None:
    """Double-majority efficiency of the targets with low <= ``var`` < high (None without any)."""
    inside = (particles[var] >= low) & (particles[var] < high)
    return float(particles["dm"][inside].mean()) if inside.any() else None


def evaluate(predictions: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict:
    """Metrics of every event in ``predictions``, summed over events (score: mean over events)."""
    attrs, events = read_predictions(predictions)
    cuts = TargetCuts(float(attrs.get("min_pt", 1.0)), float(attrs.get("max_eta", 4.0)))
    threshold = float(attrs.get("threshold", 0.5))
    tables, filter_prob, display = [], [], None
    for name, ev in events:
        display = display or (name, ev)
        ev["hit_kept"] = ev["hit_filter_prob"] >= threshold
        filter_prob.append(ev["hit_filter_prob"])
        tables.append(event_table(ev, cuts))
    num_events = len(tables)
    if not num_events:
        raise ValueError(f"no events in {predictions}")
    scores = [t.pop("trackml_score") for t in tables]
    filter_label = [t.pop("filter_label") for t in tables]
    merged = concat_tables(tables)
    totals = merged["counts"]
    prob, label = np.concatenate(filter_prob), np.concatenate(filter_label)
    tracks = merged["tracks"]
    rates = track_rates(totals)
    rates["fake_rate_all"] = rates.pop("fake_rate")
    passing = reco_passing(tracks, cuts)
    totals["tracks_passing_cuts"] = int(passing.sum())
    totals["fake_tracks_passing_cuts"] = int(tracks["fake"][passing].sum())
    particles = merged["particles"]
    tracking = rates | {
        "fake_rate": totals["fake_tracks_passing_cuts"] / max(totals["tracks_passing_cuts"], 1),
        "tracks_per_event": totals["tracks"] / num_events,
        "tracks_passing_cuts_per_event": totals["tracks_passing_cuts"] / num_events,
        "dm_efficiency_pt_1_2": binned_efficiency(particles, 1.0, 2.0),
        "dm_efficiency_pt_above_5": binned_efficiency(particles, 5.0, np.inf),
        "dm_efficiency_jet_core": binned_efficiency(particles, 0.0, 0.1, "jet_dr"),
        "trackml_score": float(np.mean(scores)),
        "num_test_events": num_events,
        "pt_min": cuts.min_pt,
    }
    filtering = {
        "hit_efficiency": totals["target_hits_kept"] / max(totals["target_hits"], 1),
        "hit_purity": totals["target_hits_kept"] / max(totals["hits_kept"], 1),
        "roc_auc": roc_auc(prob, label),
        # 0 without targets, like the rates above (retention_rate alone says NaN)
        "particle_retention": retention_rate(
            {"retained": totals["targets_retained"], "particles": max(totals["particles"], 1)}
        ),
        "hits_per_event_before": totals["hits"] / num_events,
        "hits_per_event_after": totals["hits_kept"] / num_events,
    }
    result = {"filter": filtering, "tracking": tracking, "counts": totals, "plots": []}
    if out_dir is not None:
        result["plots"] = [str(p) for p in write_figures(Path(out_dir), merged, prob, label, display)]
    return result
