"""Figures (matplotlib). Functions return figures and never read or write files."""

import numpy as np
from matplotlib.figure import Figure  # the object API needs no display and no global pyplot state

from hepattn.metrics.binned import binned_rate
from hepattn.metrics.regression import residual_summary


def event_display(
    x,
    y,
    z,
    particle_id,
    title: str = "",
    max_particles: int | None = None,
    background: int = 0,
    background_label: str = "noise / other",
) -> Figure:
    """x-y and r-z views of one event: hits coloured by particle, noise (particle_id 0) in grey.

    Args:
        x: hit x positions [mm].
        y: hit y positions [mm].
        z: hit z positions [mm].
        particle_id: (N,) particle of each hit, 0 for noise; None draws every hit in one colour.
        title: figure title.
        max_particles: colour at most this many particles (those with most hits; None: all), the rest grey.
        background: the id drawn grey (noise); ``track_display`` passes -1, "no track".
        background_label: legend label of the grey hits.
    """
    x, y, z = (np.asarray(a, dtype=float) for a in (x, y, z))
    r = np.hypot(x, y)
    pid = np.full(len(x), background, dtype=np.int64) if particle_id is None else np.asarray(particle_id)
    ids, counts = np.unique(pid[pid != background], return_counts=True)
    shown = np.sort(ids[np.argsort(-counts)[:max_particles]])
    coloured = np.isin(pid, shown)
    colour = np.random.default_rng(0).random(len(shown))[np.searchsorted(shown, pid[coloured])]
    fig = Figure(figsize=(14, 6.5))
    ax_xy, ax_rz = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    for ax, (h, v), (hl, vl) in (
        (ax_xy, (x, y), ("x [mm]", "y [mm]")),
        (ax_rz, (z, r), ("z [mm]", "r [mm]")),
    ):
        ax.scatter(h[~coloured], v[~coloured], s=0.3, c="0.7", lw=0, label=background_label, rasterized=True)
        ax.scatter(h[coloured], v[coloured], s=0.6, c=colour, cmap="hsv", lw=0, rasterized=True)
        ax.set_xlabel(hl)
        ax.set_ylabel(vl)
    ax_xy.set_aspect("equal")
    fig.suptitle(title or f"{len(x):,} hits, {len(ids):,} particles")
    fig.tight_layout()
    return fig


def track_display(x, y, z, hit_track, title: str = "", max_tracks: int | None = None) -> Figure:
    """``event_display`` of the reconstruction: hits coloured by predicted track, unassigned hits grey.

    Args:
        x: hit x positions [mm].
        y: hit y positions [mm].
        z: hit z positions [mm].
        hit_track: (N,) predicted track id of each hit (any non-negative integers), -1 for no track.
        title: figure title (default: the numbers of hits and tracks).
        max_tracks: colour at most this many tracks (those with most hits; None: all), the rest grey.
    """
    hit_track = np.asarray(hit_track, dtype=np.int64)
    num_tracks = len(np.unique(hit_track[hit_track >= 0]))
    title = title or f"{len(hit_track):,} hits, {num_tracks:,} predicted tracks (grey: no track)"
    return event_display(x, y, z, hit_track, title, max_tracks, background=-1, background_label="no track")


def rate_plot(
    values,
    curves: dict[str, np.ndarray],
    bins: np.ndarray,
    xlabel: str,
    ylabel: str = "efficiency",
    logx: bool = False,
    title: str = "",
) -> Figure:
    """Rates versus one variable, one curve per entry of ``curves``, with 68% error bars.

    For example ``values`` the target particles' pT and ``curves`` {"DM": dm, "perfect": perfect, "LHC":
    lhc} from ``metrics.binned.track_table(...)["particles"]``; or the tracks' pT and {"fake": fake}.

    Args:
        values: (M,) the variable on the x axis, shared by all curves.
        curves: label -> (M,) booleans; each curve is ``binned_rate(passed, values, bins)``. A curve
            given as (passed, selected), two (M,) booleans, is the rate among the selected entries
            only (e.g. efficiency versus dR in a pT range).
        bins: (K + 1,) bin edges; the horizontal bars show the bin widths.
        xlabel: x-axis label.
        ylabel: y-axis label.
        logx: logarithmic x axis (and geometric bin centres), e.g. for pT.
        title: axes title.
    """
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    values = np.asarray(values)
    for label, curve in curves.items():
        passed, selected = curve if isinstance(curve, tuple) else (curve, slice(None))
        centres, rate, error, _ = binned_rate(np.asarray(passed)[selected], values[selected], bins, log=logx)
        xerr = np.stack([centres - bins[:-1], bins[1:] - centres])
        ax.errorbar(centres, rate, yerr=error, xerr=xerr, fmt="o", ms=3.5, capsize=0, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    ax.set_xlim(bins[0], bins[-1])
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def roc_plot(fpr, tpr, auc: float | None = None, title: str = "hit filter ROC") -> Figure:
    """ROC curve from ``metrics.filter.roc_curve``, with the AUC in the legend and the chance diagonal."""
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot(fpr, tpr, label="filter" if auc is None else f"AUC = {auc:.4f}")
    ax.plot([0, 1], [0, 1], ls=":", c="0.6", label="chance")
    ax.set_xlabel("false positive rate (other hits kept)")
    ax.set_ylabel("true positive rate (target hits kept)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(frameon=False, loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    return fig


RESIDUAL_LABELS = {
    "pt": "pT (pred - true) / true",
    "eta": "eta, pred - true",
    "phi": "phi, pred - true [rad]",
    "vz": "vertex z, pred - true [mm]",
}


def residual_plot(residuals: dict[str, np.ndarray], labels: dict[str, str] | None = None) -> Figure:
    """One histogram per field of ``metrics.regression.regression_residuals``, mean and width in the legend.

    The histogram range is the 1%-99% quantile range, so that a few outliers do not squeeze the core;
    the legend quotes ``residual_summary`` of all entries (the width is half the 16%-84% range).

    Args:
        residuals: field -> (M,) residuals.
        labels: field -> x-axis label (default ``RESIDUAL_LABELS``, else the field name).
    """
    labels = RESIDUAL_LABELS | (labels or {})
    fig = Figure(figsize=(3.2 * max(len(residuals), 1), 3.5))
    axes = np.atleast_1d(fig.subplots(1, max(len(residuals), 1)))
    for ax, (key, r) in zip(axes, residuals.items(), strict=False):
        s = residual_summary(r)
        if s["count"]:
            lo, hi = np.quantile(r, [0.01, 0.99])
            legend = f"mean {s['mean']:.3g}\nwidth {s['width']:.3g}\n{s['count']:,} tracks"
            ax.hist(r, bins=50, range=(lo, hi) if hi > lo else None, histtype="stepfilled", label=legend)
            ax.set_ylim(top=1.35 * ax.get_ylim()[1])  # headroom for the legend
            ax.legend(frameon=False, fontsize=8, handlelength=0, handletextpad=0, loc="upper right")
        ax.set_xlabel(labels.get(key, key))
    fig.tight_layout()
    return fig
