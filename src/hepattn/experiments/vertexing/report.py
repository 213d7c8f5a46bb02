"""The demo's side-by-side table (stdout and ``report.md``)."""

from pathlib import Path

ROWS = (
    ("efficiency", "efficiency", "{:.1%}"),
    ("fake_rate_per_event", "fakes per event", "{:.2f}"),
    ("merge_rate", "merged / vertices", "{:.1%}"),
    ("split_rate", "split / vertices", "{:.1%}"),
    ("z_resolution_mm", "z resolution, core (um)", "{:.1f}", 1000),
    ("z_rms_mm", "z residual RMS (um)", "{:.1f}", 1000),
    ("xy_resolution_mm", "x-y resolution, core (um)", "{:.1f}", 1000),
    ("assignment_efficiency", "track assignment efficiency", "{:.1%}"),
    ("assignment_purity", "track assignment purity", "{:.1%}"),
    ("hs_selection_efficiency", "hard scatter selected", "{:.1%}"),
    ("hs_z_resolution_mm", "hard-scatter z resolution (um)", "{:.1f}", 1000),
    ("vertices_per_event", "vertices per event", "{:.1f}"),
    ("z_pull_width", "z pull width, core (1: sigma_z calibrated)", "{:.2f}"),
)
METHODS = ("model", "amvf_gaussian", "amvf_grid", "truth_fit")


def summary_table(metrics: dict) -> str:
    """Markdown table: one row per figure, one column per method."""
    methods = [m for m in METHODS if m in metrics]
    lines = ["| | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for key, label, fmt, *scale in ROWS:
        if not any(key in metrics[m] for m in methods):
            continue
        cells = [
            fmt.format(metrics[m][key] * (scale[0] if scale else 1)) if key in metrics[m] else "-"
            for m in methods
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out: Path, metrics: dict, plots: list[Path]) -> Path:
    """``report.md``: settings, the table, timing and the plots."""
    model = metrics["model"]
    text = [
        "# Primary vertexing: MaskFormer against ACTS AMVF on the same tracks",
        "",
        f"{model['num_test_events']} test events, ttbar + Poisson({model['pileup']:g}) pile-up, luminous "
        f"region sigma_z {model['sigma_z_mm']:g} mm; {model['true_vertices_per_event']:.1f} truth vertices "
        "(collisions with >= 2 fitted tracks) per event. Definitions: docs/metrics.md (Vertices). AMVF gives "
        "positions only: its tracks are assigned by z0 significance (< 3 sigma); the hard scatter of a "
        "baseline is its vertex of largest sum pT^2, the model's the vertex its hard-scatter head scores "
        "highest.",
        "",
        summary_table(metrics),
        "",
        "Timing: " + ", ".join(f"{k} {v:g}" for k, v in metrics["timing"].items()),
        "",
    ]
    text += [f"![{p.stem}]({p.relative_to(out)})" for p in plots]
    path = out / "report.md"
    path.write_text("\n".join(text) + "\n")
    return path
