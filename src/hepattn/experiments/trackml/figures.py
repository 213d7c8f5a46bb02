"""The plots of ``hepattn evaluate``, drawn with ``metrics.plots`` from the rows of ``track_table``."""

from pathlib import Path

import numpy as np

from hepattn.metrics.filter import roc_auc, roc_curve
from hepattn.metrics.plots import rate_plot, residual_plot, roc_plot, track_display
from hepattn.metrics.regression import regression_residuals

BINS = {
    "pt": (np.geomspace(1.0, 100.0, 11), "pT [GeV]", True),
    "eta": (np.linspace(-4.0, 4.0, 17), "eta", False),
    "phi": (np.linspace(-np.pi, np.pi, 13), "phi", False),
}


JET_DR_BINS = np.array([0.005, 0.02, 0.05, 0.1, 0.2, 0.4, 1.0, 3.0])
PT_RANGES = ((1.0, 2.0), (2.0, 5.0), (5.0, 1000.0))


def write_figures(out: Path, table: dict, prob: np.ndarray, label: np.ndarray, display) -> list[Path]:
    """Write every plot as PNG into ``out``; returns their paths.

    Args:
        out: folder for the PNGs.
        table: ``metrics.binned.concat_tables`` of the events: particle, track and match rows.
        prob: filter probability of every hit.
        label: whether each hit belongs to a target particle.
        display: (event name, event arrays) of the event to draw, or None.
    """
    out.mkdir(parents=True, exist_ok=True)
    p, t, m = table["particles"], table["tracks"], table["matches"]
    figures = {}
    for var, (bins, xlabel, logx) in BINS.items():
        curves = {"DM": p["dm"], "perfect": p["perfect"], "LHC": p["lhc"]}
        figures[f"efficiency_vs_{var}"] = rate_plot(p[var], curves, bins, xlabel, logx=logx)
        fakes = {"fake": t["fake"]}
        figures[f"fake_rate_vs_{var}"] = rate_plot(t[var], fakes, bins, xlabel, "fake rate", logx=logx)
    in_range = {f"{lo:g} < pT < {hi:g} GeV": (p["pt"] >= lo) & (p["pt"] < hi) for lo, hi in PT_RANGES}
    curves = {name: (p["dm"], inside) for name, inside in in_range.items()}
    figures["efficiency_vs_jet_dr"] = rate_plot(
        p["jet_dr"], curves, JET_DR_BINS, "dR to the nearest jet axis", "DM efficiency", logx=True
    )
    fpr, tpr = roc_curve(prob, label)
    figures["filter_roc"] = roc_plot(fpr, tpr, roc_auc(prob, label))
    pred = {k[5:]: v for k, v in m.items() if k.startswith("pred_")}
    true = {k[5:]: v for k, v in m.items() if k.startswith("true_")}
    figures["residuals"] = residual_plot(regression_residuals(pred, true))
    if display is not None:
        name, ev = display
        x, y, z = (ev[f"hit_{c}"] for c in "xyz")
        figures["event_tracks"] = track_display(x, y, z, ev["hit_track"], f"{name}: predicted tracks")
    paths = []
    for name, fig in figures.items():
        paths.append(out / f"{name}.png")
        fig.savefig(paths[-1], dpi=110)
    return paths
