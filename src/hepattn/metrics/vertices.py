"""Vertex finding scored by the tracks a vertex holds, as ACTS's ``VertexTruthMatcher`` does.

Per event the inputs are, for every track, the truth vertex it comes from (0: from none that counts, e.g.
a collision with fewer than two tracks) and the reconstructed vertex it was assigned to (0: unassigned),
plus the positions of both kinds of vertices and a score per reconstructed vertex (the hard-scatter
choice is the vertex of highest score).

Definitions (docs/metrics.md, "Vertices"):
- a reconstructed vertex is matched to the truth vertex that gives most of its tracks; its purity is that
  share of its tracks. A vertex with no track from a truth vertex is **fake**;
- of the reconstructed vertices matched to one truth vertex, the one holding most of its tracks is its
  match, **clean** when its purity exceeds ``threshold`` (0.7, ACTS's vertexMatchThreshold), else
  **merged**; the others are **split**;
- efficiency: truth vertices with a match (clean or merged) over truth vertices; fake rate per event; merge
  and split rates as fractions of the reconstructed vertices;
- resolutions from the matched pairs: the core width (half the 16-84% range) and the RMS of the residual;
- track assignment: efficiency, the tracks of a truth vertex assigned to its match; purity, the assigned
  tracks whose vertex is matched to their own truth vertex;
- hard scatter (truth vertex ``hard_scatter``, 1): selected when the highest-score vertex is matched to it.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hepattn.metrics.regression import residual_summary

CLASSES = ("clean", "merged", "split", "fake")


@dataclass
class VertexEvent:
    """One event's vertices and its tracks' links to them (ids are positive; 0 means none).

    Attributes:
        track_true: (T,) truth vertex id of each track.
        track_reco: (T,) reconstructed vertex id of each track.
        true_id, true_xyz: (V,), (V, 3) the truth vertices and their positions (mm).
        reco_id, reco_xyz, reco_score: (R,), (R, 3), (R,) the reconstructed vertices.
    """

    track_true: np.ndarray
    track_reco: np.ndarray
    true_id: np.ndarray
    true_xyz: np.ndarray
    reco_id: np.ndarray
    reco_xyz: np.ndarray
    reco_score: np.ndarray


def match_event(event: VertexEvent, threshold: float = 0.7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Classify one event's vertices.

    Returns:
        reco: per reconstructed vertex: id, ntracks, truth (matched truth id, 0 if fake), held (its
            tracks from that truth vertex), purity (held / ntracks), kind (one of ``CLASSES``), score, x,
            y, z.
        true: per truth vertex: id, ntracks, nvertices (truth vertices in the event), match (id of its
            match, 0 if none), kind of the match ("" if none), assigned (its tracks on its match), x, y, z.
    """
    track_true = np.asarray(event.track_true, dtype=np.int64)
    track_reco = np.asarray(event.track_reco, dtype=np.int64)
    true_id = np.asarray(event.true_id, dtype=np.int64)
    reco_id = np.asarray(event.reco_id, dtype=np.int64)
    counted = np.isin(track_true, true_id)  # tracks of a truth vertex that counts
    pairs = pd.DataFrame({"reco": track_reco, "true": np.where(counted, track_true, 0)})
    pairs = pairs[pairs.reco > 0]
    ntracks = pairs.groupby("reco").size()
    shared = pairs[pairs.true > 0].groupby(["reco", "true"]).size().rename("shared").reset_index()
    # each reconstructed vertex's majority truth vertex (ties: the lower truth id)
    majority = shared.sort_values(["reco", "shared", "true"], ascending=[True, False, True])
    majority = majority.drop_duplicates("reco").set_index("reco")
    reco = pd.DataFrame({"id": reco_id, "score": np.asarray(event.reco_score, dtype=np.float64)})
    reco[["x", "y", "z"]] = np.asarray(event.reco_xyz, dtype=np.float64).reshape(len(reco_id), 3)
    reco["ntracks"] = ntracks.reindex(reco_id, fill_value=0).to_numpy()
    reco["truth"] = majority["true"].reindex(reco_id, fill_value=0).to_numpy()
    held = majority["shared"].reindex(reco_id, fill_value=0).to_numpy()
    reco["purity"] = np.where(reco.ntracks > 0, held / np.maximum(reco.ntracks, 1), 0.0)
    reco["held"] = held
    # the match of a truth vertex: of the vertices it leads, the one holding most of its tracks
    leading = reco[reco.truth > 0].sort_values(["truth", "held", "purity", "id"], ascending=[1, 0, 0, 1])
    first = ~leading.truth.duplicated()
    kind = np.where(leading.purity > threshold, "clean", "merged")
    kinds = pd.Series(np.where(first, kind, "split"), index=leading.id)
    reco["kind"] = kinds.reindex(reco_id, fill_value="fake").to_numpy()
    matches = leading[first.to_numpy()].set_index("truth")

    true = pd.DataFrame({"id": true_id})
    true[["x", "y", "z"]] = np.asarray(event.true_xyz, dtype=np.float64).reshape(len(true_id), 3)
    true["ntracks"] = pd.Series(track_true[counted]).value_counts().reindex(true_id, fill_value=0).to_numpy()
    true["nvertices"] = len(true_id)
    true["match"] = matches["id"].reindex(true_id, fill_value=0).to_numpy()
    true["kind"] = kinds.reindex(true.match, fill_value="").to_numpy()
    true["assigned"] = matches["held"].reindex(true_id, fill_value=0).to_numpy()
    return reco, true


def summarize(
    recos: list[pd.DataFrame], trues: list[pd.DataFrame], hard_scatter: int = 1
) -> dict[str, float | int]:
    """The figures of ``match_event``'s tables over events (one pair of tables per event)."""
    events = len(recos)
    reco = pd.concat(recos, ignore_index=True) if recos else pd.DataFrame(columns=["kind", "ntracks"])
    true = pd.concat(trues, ignore_index=True) if trues else pd.DataFrame(columns=["match", "ntracks"])
    n_reco, n_true = len(reco), len(true)
    counts = {k: int((reco.kind == k).sum()) for k in CLASSES}
    out: dict[str, float | int] = {
        "num_events": events,
        "num_true_vertices": n_true,
        "num_reco_vertices": n_reco,
        "efficiency": _ratio((true.match > 0).sum(), n_true),
        "fake_rate_per_event": _ratio(counts["fake"], events),
        "merge_rate": _ratio(counts["merged"], n_reco),
        "split_rate": _ratio(counts["split"], n_reco),
        "clean_fraction": _ratio(counts["clean"], n_reco),
        "vertices_per_event": _ratio(n_reco, events),
        "true_vertices_per_event": _ratio(n_true, events),
    }
    residual = matched_residuals(recos, trues)
    z, xy = residual["z"], np.concatenate([residual["x"], residual["y"]])
    out |= {
        "z_resolution_mm": residual_summary(z)["width"],
        "z_rms_mm": _rms(z),
        "xy_resolution_mm": residual_summary(xy)["width"],
        "xy_rms_mm": _rms(xy),
        # tracks of truth vertices on their match, over all their tracks / over all assigned tracks
        "assignment_efficiency": _ratio(
            true.assigned.sum() if n_true else 0, true.ntracks.sum() if n_true else 0
        ),
        "assignment_purity": _ratio(reco.held.sum() if n_reco else 0, reco.ntracks.sum() if n_reco else 0),
    }
    out |= _hard_scatter(recos, trues, hard_scatter)
    return out


def binned_efficiency(trues: list[pd.DataFrame], by: str, edges) -> dict[str, np.ndarray]:
    """Efficiency of truth vertices in bins of ``by`` ("ntracks" or "nvertices"): centres, rate, error."""
    true = pd.concat(trues, ignore_index=True)
    edges = np.asarray(edges, dtype=np.float64)
    index = np.digitize(true[by].to_numpy(), edges) - 1
    inside = (index >= 0) & (index < len(edges) - 1)
    total = np.bincount(index[inside], minlength=len(edges) - 1)
    found = np.bincount(index[inside], weights=(true.match.to_numpy() > 0)[inside], minlength=len(edges) - 1)
    rate = np.divide(found, total, out=np.full(len(total), np.nan), where=total > 0)
    error = np.sqrt(np.divide(rate * (1 - rate), total, out=np.full(len(total), np.nan), where=total > 0))
    return {"centre": (edges[1:] + edges[:-1]) / 2, "rate": rate, "error": error, "count": total}


def binned_resolution(
    recos: list[pd.DataFrame], trues: list[pd.DataFrame], by: str, edges
) -> dict[str, np.ndarray]:
    """Core width of the z residual of matched truth vertices in bins of ``by`` ("ntracks", "nvertices").

    Returns centres, width (mm; NaN for an empty bin) and count per bin.
    """
    values, residual = [], []
    for reco, true in zip(recos, trues, strict=True):
        found = true[true.match > 0]
        values.append(found[by].to_numpy())
        residual.append(reco.set_index("id").loc[found.match].z.to_numpy() - found.z.to_numpy())
    values = np.concatenate(values) if values else np.zeros(0)
    residual = np.concatenate(residual) if residual else np.zeros(0)
    edges = np.asarray(edges, dtype=np.float64)
    index = np.digitize(values, edges) - 1
    widths = [residual_summary(residual[index == i])["width"] for i in range(len(edges) - 1)]
    count = np.bincount(index[(index >= 0) & (index < len(edges) - 1)], minlength=len(edges) - 1)
    return {"centre": (edges[1:] + edges[:-1]) / 2, "width": np.array(widths), "count": count}


def matched_residuals(recos: list[pd.DataFrame], trues: list[pd.DataFrame]) -> dict[str, np.ndarray]:
    """Reco minus true x, y and z of every truth vertex with a match (``match_event`` tables), mm."""
    parts = {c: [] for c in "xyz"}
    for reco, true in zip(recos, trues, strict=True):
        found = true[true.match > 0]
        matched = reco.set_index("id").loc[found.match]
        for c in "xyz":
            parts[c].append(matched[c].to_numpy() - found[c].to_numpy())
    return {c: np.concatenate(v) if v else np.zeros(0) for c, v in parts.items()}


def hard_scatter_residuals(
    recos: list[pd.DataFrame], trues: list[pd.DataFrame], hard_scatter: int = 1
) -> tuple[int, np.ndarray]:
    """Events whose hard scatter is a truth vertex; z(reco) - z(true) where the best-scored vertex is it.

    One residual per event whose highest-score vertex is matched to the hard scatter.
    """
    events, residual = 0, []
    for reco, true in zip(recos, trues, strict=True):
        if not (true.id == hard_scatter).any():
            continue
        events += 1
        if not len(reco):
            continue
        best = reco.iloc[int(np.argmax(reco.score.to_numpy()))]
        if best.truth == hard_scatter:
            residual.append(best.z - float(true.loc[true.id == hard_scatter, "z"].iloc[0]))
    return events, np.asarray(residual, dtype=np.float64)


def _hard_scatter(recos, trues, hard_scatter: int) -> dict[str, float | int]:
    events, residual = hard_scatter_residuals(recos, trues, hard_scatter)
    return {
        "hs_events": events,
        "hs_selection_efficiency": _ratio(len(residual), events),
        "hs_z_resolution_mm": residual_summary(residual)["width"],
        "hs_z_rms_mm": _rms(residual),
    }


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else float("nan")


def _ratio(num, den) -> float:
    return float(num) / float(den) if den else float("nan")
