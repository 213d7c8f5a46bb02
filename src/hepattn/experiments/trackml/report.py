"""The demo's summary: a plain-text table for the terminal and ``report.md`` with the plots."""

from pathlib import Path

ROWS = {
    "filter": [
        ("hit_efficiency", "hit efficiency (target hits kept)", "pct"),
        ("hit_purity", "hit purity (kept hits on targets)", "pct"),
        ("roc_auc", "ROC AUC", "f3"),
        ("particle_retention", "targets keeping >= 3 hits", "pct"),
        ("hits_per_event_before", "hits per event before the filter", "int"),
        ("hits_per_event_after", "hits per event after the filter", "int"),
    ],
    "tracking": [
        ("dm_efficiency", "double-majority efficiency", "pct"),
        ("perfect_efficiency", "perfect efficiency", "pct"),
        ("lhc_efficiency", "LHC efficiency (purity > 75%)", "pct"),
        ("fake_rate", "fake rate (tracks with reconstructed pT > pT cut, abs(eta) < 4)", "pct"),
        ("fake_rate_all", "fake rate (all tracks)", "pct"),
        ("dm_efficiency_pt_1_2", "DM efficiency, 1 < pT < 2 GeV", "pct"),
        ("dm_efficiency_pt_above_5", "DM efficiency, pT > 5 GeV", "pct"),
        ("dm_efficiency_jet_core", "DM efficiency, dR < 0.1 to a jet axis", "pct"),
        ("tracks_per_event", "tracks per event", "int"),
        ("tracks_passing_cuts_per_event", "tracks per event passing the pT and eta cuts", "int"),
        ("duplicate_rate", "duplicate rate", "pct"),
        ("trackml_score", "TrackML score (pixel hits)", "f3"),
        ("num_test_events", "test events", "int"),
        ("pt_min", "target pT > (GeV)", "f1"),
    ],
    "timing": [
        ("simulate_s", "simulation (s)", "f0"),
        ("train_filter_s", "filter training (s)", "f0"),
        ("train_tracker_s", "tracker training (s)", "f0"),
        ("inference_ms_per_event", "inference, filter + tracker (ms / event)", "f0"),
    ],
}


def _format(value, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "int":
        return f"{value:,.0f}"
    return f"{value:.{kind[1:]}f}"


def summary_rows(metrics: dict) -> list[tuple[str, str, str]]:
    """(section, label, formatted value) for every known metric present in ``metrics``."""
    return [
        (section, label, _format(metrics[section][key], kind))
        for section, rows in ROWS.items()
        if section in metrics
        for key, label, kind in rows
        if key in metrics[section]
    ]


def summary_table(metrics: dict) -> str:
    rows = summary_rows(metrics)
    width = max(len(label) for _, label, _ in rows)
    lines, current = [], None
    for section, label, value in rows:
        if section != current:
            lines.append(f"\n{section}")
            current = section
        lines.append(f"  {label:<{width}}  {value:>10}")
    return "\n".join(lines).lstrip("\n")


def write_report(out: Path, metrics: dict, plots: list[Path]) -> Path:
    """``out/report.md``: settings, the metrics table and the plots (paths relative to ``out``)."""
    settings = metrics.get("settings", {})
    lines = ["# hepattn demo report", ""]
    if settings:
        lines += [
            f"Top-pair events with Poisson({settings['pileup']:g}) pile-up, pixel volumes 7, 8, 9; "
            f"{settings['train_events']} training, {settings['val_events']} validation and "
            f"{settings['test_events']} test events; targets: particles with pT > "
            f"{settings['min_pt']:g} GeV, "
            "abs(eta) < 4 and at least 3 pixel hits. Definitions: docs/metrics.md.",
            "",
        ]
    lines += ["| | metric | value |", "|---|---|---|"]
    lines += [f"| {section} | {label} | {value} |" for section, label, value in summary_rows(metrics)]
    lines.append("")
    for plot in plots:
        lines.append(f"![{plot.stem}]({plot.relative_to(out).as_posix()})")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
