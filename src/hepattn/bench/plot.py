"""The scaling figure of a benchmark report: time and peak memory against hits, log-log."""

from matplotlib.figure import Figure

from hepattn.bench.report import series

COLORS = {"encoder": "C0", "decoder": "C1", "model": "C2", "train": "C3", "matcher": "C4", "filter": "C5"}
STYLES = {"torch": "-", "flex": "--", "flash": ":", "scipy": "-", "lap": "--"}


def scaling_figure(report: dict) -> Figure:
    """Median time and peak memory of every series with two or more hit counts, with N and N^2 guides.

    Colour says the part, line style the kernel (or the solver, for the matcher).
    """
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    ax_time, ax_mem = fig.subplots(1, 2)
    groups = {k: v for k, v in series(report["rows"]).items() if len(v) > 1}
    precisions, compiles = {k[2] for k in groups}, {k[3] for k in groups}
    for (mode, kernel, precision, compile), rows in groups.items():
        label = f"{mode} ({kernel}"
        label += f", {precision}" if len(precisions) > 1 else ""
        label += f", compile {compile}" if len(compiles) > 1 else ""
        style = {"color": COLORS.get(mode), "ls": STYLES.get(kernel, "-."), "marker": "o", "ms": 4}
        hits = [r["hits"] for r in rows]
        ax_time.loglog(hits, [r["median_ms"] for r in rows], label=label + ")", **style)
        mem = [(h, r["peak_mb"]) for h, r in zip(hits, rows, strict=True) if r["peak_mb"]]
        if mem:
            ax_mem.loglog(*zip(*mem, strict=True), **style)
    for ax, key in ((ax_time, "median_ms"), (ax_mem, "peak_mb")):
        _guides(ax, groups, key)
        ax.set_xlabel("hits N")
        ax.grid(True, which="both", alpha=0.3)
    ax_time.set_ylabel("median time per call [ms]")
    ax_mem.set_ylabel("peak memory above resident [MiB]")
    fig.legend(*ax_time.get_legend_handles_labels(), loc="outside right center", fontsize=7)
    h = report["header"]
    machine = h["cuda"]["name"] if h["cuda"] else f"{h['cpu']}, {h['torch_threads']} threads"
    fig.suptitle(f"hepattn bench, {h['settings']['device']} ({machine}), model size {h['settings']['size']}, "
                 f"{h['date'][:10]}", fontsize=10)  # fmt: skip
    return fig


def _guides(ax, groups: dict, key: str) -> None:
    """Grey lines growing as N (dashed) and N^2 (dotted) from the first encoder point, for the eye."""
    anchors = [rows for (mode, *_), rows in groups.items() if mode == "encoder" and rows[0].get(key)]
    anchors = anchors or [rows for rows in groups.values() if rows[0].get(key)]
    if not anchors:
        return
    rows = anchors[0]
    n0, y0, n1 = rows[0]["hits"], rows[0][key], rows[-1]["hits"]
    ax.loglog([n0, n1], [y0, y0 * n1 / n0], color="grey", ls="--", lw=0.8, label="∝ N")
    ax.loglog([n0, n1], [y0, y0 * (n1 / n0) ** 2], color="grey", ls=":", lw=0.8, label="∝ N²")
