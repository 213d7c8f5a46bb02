"""``hepattn validate-sim``: how close simulated events come to the real TrackML files.

Hits are compared per volume and per (volume, layer), as the mean per event, against the real test events
(hits only); particles against the real training event 1000 (its particles file): hits per particle,
pT, eta and production vertex spectra. Everything but ``validate`` is a pure function of frames.
"""

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from tqdm import tqdm

from hepattn.data import kinematics
from hepattn.data.sim.digitize import decode_particle_id
from hepattn.data.trackml import event_prefix, find_events, read_event

VOLUMES = {
    7: "pixel endcap -z",
    8: "pixel barrel",
    9: "pixel endcap +z",
    12: "short-strip endcap -z",
    13: "short-strip barrel",
    14: "short-strip endcap +z",
    16: "long-strip endcap -z",
    17: "long-strip barrel",
    18: "long-strip endcap +z",
}
REAL_EVENTS = (2, 3)  # the real test events: hits only
REAL_PARTICLES_EVENT = 1000  # the real training event whose particles file we have
PT_BINS = np.geomspace(0.1, 100.0, 61)  # GeV
ETA_BINS = np.linspace(-4.0, 4.0, 41)
VZ_BINS = np.linspace(-300.0, 300.0, 61)  # mm
VR_BINS = np.linspace(0.0, 1000.0, 51)  # mm
NHITS_BINS = np.arange(0.5, 31.5)
BEAM_LINE_R = 1.0  # mm: particles made closer to the beam line come from the luminous region


@dataclass
class Sample:
    """The frames of one side of the comparison: hits of each event, particles of each event."""

    hits: list[pd.DataFrame]
    particles: list[pd.DataFrame]


def _counts_per_event(hits_frames: Sequence[pd.DataFrame], keys: list[str]) -> pd.Series:
    if not hits_frames:
        raise ValueError("no events to count hits in")
    counts = pd.concat([h.groupby(keys).size() for h in hits_frames], axis=1).fillna(0)
    return counts.mean(axis=1).sort_index()


def hits_per_volume(hits_frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Mean number of hits per event in each volume: index volume_id, column ``hits``."""
    return _counts_per_event(hits_frames, ["volume_id"]).to_frame("hits")


def hits_per_layer(hits_frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Mean number of hits per event in each layer: index (volume_id, layer_id), column ``hits``."""
    return _counts_per_event(hits_frames, ["volume_id", "layer_id"]).to_frame("hits")


def compare(sim: pd.DataFrame | pd.Series, real: pd.DataFrame | pd.Series) -> pd.DataFrame:
    """Join two tables of one value per row on their index: columns real, sim and ratio = sim / real.

    A row found on one side only counts 0 on the other; its ratio is NaN where real is 0.
    """
    sim, real = (t.iloc[:, 0] if isinstance(t, pd.DataFrame) else t for t in (sim, real))
    table = pd.concat({"real": real, "sim": sim}, axis=1).fillna(0.0).sort_index()
    table["ratio"] = table.sim / table.real.where(table.real != 0)
    return table


def particle_features(particles: pd.DataFrame) -> pd.DataFrame:
    """Per particle: nhits, pt [GeV], eta, vz and vr [mm], and whether it is a secondary (generation > 0)."""
    pt = kinematics.pt(particles.px.to_numpy(np.float64), particles.py.to_numpy(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = kinematics.eta(pt, particles.pz.to_numpy(np.float64))
    return pd.DataFrame(
        {
            "nhits": particles.nhits.to_numpy(),
            "pt": pt,
            "eta": eta,
            "vz": particles.vz.to_numpy(np.float64),
            "vr": kinematics.radius(particles.vx.to_numpy(np.float64), particles.vy.to_numpy(np.float64)),
            "secondary": decode_particle_id(particles.particle_id.to_numpy())["generation"] > 0,
        }
    )


def particle_summary(particles_frames: Sequence[pd.DataFrame]) -> dict[str, float]:
    """Particle-level numbers, per event where they are counts; spectra are of particles with hits.

    Keys: events, particles and with_hits (per event), nhits_mean and nhits_max (particles with hits),
    pt_gt_1 (per event, particles with hits), pt_median, abs_eta_mean, vz_std (of those made within
    ``BEAM_LINE_R`` of the beam line: the luminous region, without the long tails of decays and
    interactions), vr_median and secondary_fraction (generation > 0, of the particles with hits).
    """
    if not particles_frames:
        raise ValueError("no particle frames to summarise")
    n = len(particles_frames)
    features = pd.concat([particle_features(p) for p in particles_frames], ignore_index=True)
    hit = features[features.nhits > 0]
    return {
        "events": n,
        "particles": len(features) / n,
        "with_hits": len(hit) / n,
        "nhits_mean": float(hit.nhits.mean()),
        "nhits_max": int(hit.nhits.max()) if len(hit) else 0,
        "pt_gt_1": float((hit.pt > 1.0).sum() / n),
        "pt_median": float(hit.pt.median()),
        "abs_eta_mean": float(np.abs(hit.eta[np.isfinite(hit.eta)]).mean()),
        "vz_std": float(hit.vz[hit.vr < BEAM_LINE_R].std(ddof=0)),
        "vr_median": float(hit.vr.median()),
        "secondary_fraction": float(hit.secondary.mean()),
    }


def _overlay(ax, sim: np.ndarray, real: np.ndarray, bins: np.ndarray, n_sim: int, n_real: int) -> None:
    for values, n, label, style in ((real, n_real, "real", "-"), (sim, n_sim, "sim", "--")):
        weights = np.full(len(values), 1.0 / n)
        ax.hist(values, bins=bins, weights=weights, histtype="step", ls=style, lw=1.5, label=label)
    ax.set_ylabel("per event")
    ax.legend()


def _bars(table: pd.DataFrame, labels: list[str], title: str, figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize)
    ax_n, ax_r = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    x = np.arange(len(table))
    ax_n.bar(x - 0.2, table.real, width=0.4, label="real")
    ax_n.bar(x + 0.2, table.sim, width=0.4, label="sim")
    ax_n.set_ylabel("hits per event")
    ax_n.set_title(title)
    ax_n.legend()
    ax_r.axhline(1.0, c="0.5", lw=0.8)
    ax_r.plot(x, table.ratio, "o", c="k", ms=3)
    ax_r.set_ylabel("sim / real")
    ax_r.set_ylim(0.5, 1.5)
    ax_r.set_xticks(x, labels, rotation=90, fontsize=7)
    fig.tight_layout()
    return fig


def overlay_figures(sim: Sample, real: Sample) -> dict[str, Figure]:
    """Overlays of sim on real, normalised per event, by name.

    hits_per_volume and hits_per_layer are bars with the ratio below; nhits, pt (log x), eta, vz and vr are
    histograms of the particles with hits (log y where the tails matter).
    """
    volumes = compare(hits_per_volume(sim.hits), hits_per_volume(real.hits))
    layers = compare(hits_per_layer(sim.hits), hits_per_layer(real.hits))
    figures = {
        "hits_per_volume": _bars(
            volumes, [f"{v} {VOLUMES.get(v, '')}" for v in volumes.index], "hits per volume", (8, 6)
        ),
        "hits_per_layer": _bars(layers, [f"{v}-{la}" for v, la in layers.index], "hits per layer", (14, 6)),
    }
    hit_sim, hit_real = (
        pd.concat([particle_features(p) for p in s.particles], ignore_index=True).query("nhits > 0")
        for s in (sim, real)
    )
    spectra = {
        "nhits": (NHITS_BINS, "hits per particle", False, True),
        "pt": (PT_BINS, "pT [GeV]", True, True),
        "eta": (ETA_BINS, "eta", False, False),
        "vz": (VZ_BINS, "production vertex z [mm]", False, True),
        "vr": (VR_BINS, "production vertex r [mm]", False, True),
    }
    for name, (bins, label, log_x, log_y) in spectra.items():
        fig = Figure(figsize=(6, 4.5))
        ax = fig.subplots()
        s, r = hit_sim[name].to_numpy(), hit_real[name].to_numpy()
        _overlay(ax, s[np.isfinite(s)], r[np.isfinite(r)], bins, len(sim.particles), len(real.particles))
        ax.set_xlabel(label)
        ax.set_xscale("log" if log_x else "linear")
        ax.set_yscale("log" if log_y else "linear")
        ax.set_title("particles with hits")
        fig.tight_layout()
        figures[name] = fig
    return figures


def format_table(table: pd.DataFrame, names: dict | None = None) -> str:
    """A ``compare`` table as plain text, one row per index entry, then a total row."""
    rows = []
    for key, row in table.iterrows():
        label = " ".join(map(str, key)) if isinstance(key, tuple) else str(key)
        if names and key in names:
            label += f" {names[key]}"
        rows.append((label, row.real, row.sim, row.ratio))
    real_total, sim_total = table.real.sum(), table.sim.sum()
    rows.append(("total", real_total, sim_total, sim_total / real_total if real_total else np.nan))
    width = max(len(r[0]) for r in rows)
    head = "volume layer" if table.index.nlevels == 2 else "volume"
    lines = [f"{head:<{width}}  {'real':>10}  {'sim':>10}  {'ratio':>6}"]
    lines += [
        f"{label:<{width}}  {real:>10,.0f}  {sim:>10,.0f}  {ratio:>6.2f}" for label, real, sim, ratio in rows
    ]
    return "\n".join(lines)


def format_particles(sim: dict, real: dict) -> str:
    """Two ``particle_summary`` dicts side by side as plain text."""
    lines = [f"{'particles':<20}  {'real':>10}  {'sim':>10}  {'ratio':>6}"]
    for key in (k for k in real if k != "events"):
        ratio = sim[key] / real[key] if real[key] else np.nan
        lines.append(f"{key:<20}  {real[key]:>10,.3f}  {sim[key]:>10,.3f}  {ratio:>6.2f}")
    return "\n".join(lines)


def _records(table: pd.DataFrame) -> list[dict]:
    table = table.reset_index().astype({c: int for c in table.index.names})
    return json.loads(table.to_json(orient="records"))  # NaN becomes null


def validate(
    sim_dir: str | os.PathLike,
    real_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    real_events: Sequence[int] = REAL_EVENTS,
    real_particles_event: int = REAL_PARTICLES_EVENT,
) -> dict:
    """Compare every event of ``sim_dir`` with the real files of ``real_dir``; print, plot and save.

    Prints the per-volume, per-layer and particle tables, and writes one PNG per ``overlay_figures``
    entry and ``validation.json`` into ``out_dir``.

    Returns:
        What ``validation.json`` holds: sim_events (their names), real_events, real_particles_event,
        volumes and layers (lists of rows with real, sim and ratio), particles ({"real": ..., "sim": ...},
        see ``particle_summary``) and seconds (the time taken).
    """
    start = time.perf_counter()
    prefixes = find_events(Path(sim_dir))
    if not prefixes:
        raise FileNotFoundError(f"no TrackML events (event*-hits.csv[.gz]) in {sim_dir}")
    sim = Sample([], [])
    for prefix in tqdm(prefixes, desc="validate", unit="event"):
        frames = read_event(prefix, ("hits", "particles"))
        sim.hits.append(frames["hits"])
        sim.particles.append(frames["particles"])
    real = Sample(
        [read_event(event_prefix(real_dir, i), ("hits",))["hits"] for i in real_events],
        [read_event(event_prefix(real_dir, real_particles_event), ("particles",))["particles"]],
    )
    volumes = compare(hits_per_volume(sim.hits), hits_per_volume(real.hits))
    layers = compare(hits_per_layer(sim.hits), hits_per_layer(real.hits))
    particles = {"real": particle_summary(real.particles), "sim": particle_summary(sim.particles)}
    print(f"{len(prefixes)} sim events in {sim_dir}; real: hits of events {list(real_events)}, ", end="")
    print(f"particles of event {real_particles_event} in {real_dir}\n")
    print(format_table(volumes, VOLUMES), end="\n\n")
    print(format_table(layers), end="\n\n")
    print(format_particles(particles["sim"], particles["real"]))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, fig in overlay_figures(sim, real).items():
        fig.savefig(out_dir / f"{name}.png", dpi=120)
    result = {
        "sim_events": [p.name for p in prefixes],
        "real_events": list(real_events),
        "real_particles_event": real_particles_event,
        "volumes": _records(volumes),
        "layers": _records(layers),
        "particles": particles,
        "seconds": round(time.perf_counter() - start, 2),
    }
    (out_dir / "validation.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
