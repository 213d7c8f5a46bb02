"""Score vertex finders on the same events: the figures of ``metrics.vertices`` per method, and plots."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hepattn.experiments.vertexing.baselines import Vertices
from hepattn.experiments.vertexing.events import VertexingEvent
from hepattn.experiments.vertexing.truth import HARD_SCATTER
from hepattn.metrics.regression import residual_summary
from hepattn.metrics.vertices import (
    VertexEvent,
    binned_efficiency,
    binned_resolution,
    hard_scatter_residuals,
    match_event,
    matched_residuals,
    summarize,
)

NTRACK_EDGES = [2, 3, 4, 6, 10, 20, 50, 1000]  # the last bin: 50 and more


def tables(events: list[VertexingEvent], results: list[Vertices]) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """``match_event`` of every event: (reco, true) tables."""
    out = []
    for event, result in zip(events, results, strict=True):
        found = result.vertices
        out.append(
            match_event(
                VertexEvent(
                    event.track_truth,
                    result.track_vertex,
                    event.truth.id.to_numpy(),
                    event.truth[["x", "y", "z"]].to_numpy(),
                    found.vertex_id.to_numpy(),
                    found[["x", "y", "z"]].to_numpy(),
                    found.score.to_numpy(),
                )
            )
        )
    return out


def score(events: list[VertexingEvent], results: list[Vertices]) -> tuple[dict, list]:
    """The figures of one method and its per-event tables."""
    matched = tables(events, results)
    return summarize([r for r, _ in matched], [t for _, t in matched]), matched


def z_pulls(results: list[Vertices], matched: list) -> dict[str, float]:
    """How well a method's predicted ``sigma_z`` describes its z residuals, over the matched vertices.

    The pull is (z - z_true) / sigma_z; a calibrated uncertainty gives a core width (half the 16-84%
    range) of 1. Empty for a method that predicts no uncertainty.
    """
    pulls = []
    for result, (_, true) in zip(results, matched, strict=True):
        if "sigma_z" not in result.vertices:
            return {}
        found = true[true.match > 0]
        reco = result.vertices.set_index("vertex_id").loc[found.match]
        pulls.append((reco.z.to_numpy() - found.z.to_numpy()) / reco.sigma_z.to_numpy())
    summary = residual_summary(np.concatenate(pulls) if pulls else np.zeros(0))
    return {"z_pull_width": summary["width"], "z_pull_median": summary["median"]}


def plot_binned(matched: dict[str, list], out: Path) -> list[Path]:
    """Efficiency and z resolution versus the tracks of a truth vertex and the truth vertices of its event."""
    paths = []
    all_true = [t for tabs in matched.values() for _, t in tabs]
    most = int(max((t.nvertices.max() for t in all_true), default=10))
    nvertex_edges = np.unique(np.linspace(0, most + 1, 8).round())
    for (by, edges, label), figure_of in itertools.product(
        (
            ("ntracks", NTRACK_EDGES, "fitted tracks of the truth vertex"),
            ("nvertices", nvertex_edges, "truth vertices in the event"),
        ),
        ("efficiency", "z_resolution"),
    ):
        names = [_bin_name(lo, hi) for lo, hi in itertools.pairwise(edges)]
        figure, axis = plt.subplots(figsize=(6, 4))
        for shift, (method, tabs) in enumerate(matched.items()):
            x = np.arange(len(names)) + 0.08 * (shift - (len(matched) - 1) / 2)
            if figure_of == "efficiency":
                b = binned_efficiency([t for _, t in tabs], by, edges)
                axis.errorbar(
                    x, b["rate"], yerr=b["error"], marker="o", capsize=2, linestyle="", label=method
                )
            else:
                b = binned_resolution([r for r, _ in tabs], [t for _, t in tabs], by, edges)
                axis.plot(x, 1000 * b["width"], marker="o", linestyle="", label=method)
        axis.set_xticks(np.arange(len(names)), names)
        axis.set_xlabel(label)
        if figure_of == "efficiency":
            axis.set_ylabel("vertex efficiency (clean or merged match)")
            axis.set_ylim(0, 1.05)
        else:
            axis.set_ylabel("z resolution of matched vertices, core [um]")
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
        axis.legend()
        path = out / f"{figure_of}_vs_{by}.png"
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)
        paths.append(path)
    return paths


def _bin_name(lo: float, hi: float) -> str:
    lo, hi = int(lo), int(hi) - 1  # integer counts in [lo, hi)
    if hi >= NTRACK_EDGES[-1] - 1:
        return f"{lo}+"
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def plot_residuals(matched: dict[str, list], out: Path) -> Path:
    """Z residual of the matched vertices and of the selected hard scatter, per method."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    bins = np.linspace(-0.3, 0.3, 61)
    for method, tabs in matched.items():
        recos, trues = [r for r, _ in tabs], [t for _, t in tabs]
        dz = matched_residuals(recos, trues)["z"]
        axes[0].hist(np.clip(dz, bins[0], bins[-1]), bins, histtype="step", label=method)
        _, hs = hard_scatter_residuals(recos, trues, HARD_SCATTER)
        axes[1].hist(np.clip(hs, -0.05, 0.05), np.linspace(-0.05, 0.05, 41), histtype="step", label=method)
    axes[0].set_xlabel("z(reco) - z(true) of matched vertices [mm] (clipped)")
    axes[1].set_xlabel("z(reco) - z(true) of the selected hard scatter [mm] (clipped)")
    for axis in axes:
        axis.set_yscale("log")
        axis.legend()
    path = out / "z_residuals.png"
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
