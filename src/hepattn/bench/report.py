"""The report of a benchmark: growth with the number of hits, the table on stdout, the JSON file."""

import json
import math
from pathlib import Path


def series(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows grouped by (mode, kernel, precision, compile), each group sorted by hits."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["mode"], r["kernel"], r["precision"], r["compile"]), []).append(r)
    return {k: sorted(v, key=lambda r: r["hits"]) for k, v in groups.items()}


def _slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y against log x: 1 is linear, 2 quadratic."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y and y > 0]
    if len(pts) < 2:
        return None
    mx, my = (sum(p[i] for p in pts) / len(pts) for i in (0, 1))
    var = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / var if var else None


def scaling(rows: list[dict]) -> list[dict]:
    """Growth of time and peak memory from the fewest to the most hits of each series, and log-log slopes."""
    out = []
    for (mode, kernel, precision, compile), group in series(rows).items():
        if len(group) < 2:
            continue
        lo, hi = group[0], group[-1]
        ratio = hi["hits"] / lo["hits"]
        entry = {"mode": mode, "kernel": kernel, "precision": precision, "compile": compile}
        entry |= {"from_hits": lo["hits"], "to_hits": hi["hits"], "hits_ratio": ratio}
        entry["time_ratio"] = round(hi["median_ms"] / lo["median_ms"], 2)
        mem = lo["peak_mb"] and hi["peak_mb"] is not None
        entry["memory_ratio"] = round(hi["peak_mb"] / lo["peak_mb"], 2) if mem else None
        hits = [r["hits"] for r in group]
        entry["time_slope"] = _round(_slope(hits, [r["median_ms"] for r in group]))
        entry["memory_slope"] = _round(_slope(hits, [r["peak_mb"] for r in group]))
        out.append(entry)
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def format_table(report: dict) -> str:
    """The rows grouped by series, then the scaling summary and what was skipped or failed."""
    h = report["header"]
    machine = h["cuda"]["name"] if h["cuda"] else f"{h['cpu']} ({h.get('cpu_capability', '?')})"
    lines = [
        f"hepattn bench {h['date']}  {h['settings']['device']}: {machine}"
        f"  cpus {h['cpu_count']}  threads {h['torch_threads']}  load {h['load_average_start']}",
        f"torch {h['versions']['torch']}  python {h['versions']['python']}  git {h['git']}"
        f"  model size {h['settings']['size']}",
        f"{'mode':8} {'kernel':7} {'prec':4} {'comp':4} {'hits':>6} {'Q':>5} {'T':>5} {'median ms':>10} "
        f"{'min ms':>9} {'first ms':>9} {'peak MB':>8} {'TFLOP/s':>8}",
    ]
    for rows in series(report["rows"]).values():
        for r in rows:
            tflops = "" if r.get("tflop_per_s") is None else f"{r['tflop_per_s']:.3f}"
            peak = "-" if r["peak_mb"] is None else r["peak_mb"]
            lines.append(
                f"{r['mode']:8} {r['kernel']:7} {r['precision']:4} {r['compile']:4} {r['hits']:>6} "
                f"{r['queries'] or '':>5} {r['targets']:>5} {r['median_ms']:>10.1f} {r['min_ms']:>9.1f} "
                f"{r['first_ms'] or 0:>9.1f} {peak:>8} {tflops:>8}"
            )
    for s in report.get("scaling", []):
        lines.append(
            f"scaling {s['mode']} {s['kernel']} {s['precision']} compile {s['compile']}: {s['from_hits']} -> "
            f"{s['to_hits']} hits (x{s['hits_ratio']:g}): time x{s['time_ratio']}, "
            f"memory x{s['memory_ratio']}; log-log slopes {s['time_slope']} (time), "
            f"{s['memory_slope']} (memory)"
        )
    lines += [f"skipped {label(r)}: {r['reason']}" for r in report["skipped"]]
    lines += [f"FAILED {label(r)}: {r['error']}" for r in report["failed"]]
    return "\n".join(lines)


def label(r: dict) -> str:
    """The row's settings in words."""
    return f"{r['hits']} hits {r['mode']} {r['kernel']} {r['precision']} compile {r['compile']}"


def write_json(report: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")


def format_flops(report: dict) -> str:
    """One line per model, hit count and component: GFLOP, MB moved and the time floor of the device."""
    dev = report["device_floor"]
    lines = [
        f"analytic counts of one event's forward pass ({report['element_bytes']} bytes per value, model size "
        f"{report['size']}); floor on {dev['name']}: {dev['flops_per_s'] / 1e12:g} TFLOP/s, "
        f"{dev['bytes_per_s'] / 1e12:g} TB/s",
        f"{'model':8} {'hits':>6} {'Q':>5} {'T':>5} {'part':15} {'GFLOP':>9} {'MB':>9} {'floor ms':>9}",
    ]
    for model, entries in report["models"].items():
        for e in entries:
            for part, c in e["parts"].items():
                lines.append(
                    f"{model:8} {e['hits']:>6} {e['queries'] or '':>5} {e['targets']:>5} {part:15} "
                    f"{c['gflop']:>9.1f} {c['mb']:>9.1f} {c['floor_ms']:>9.3f}"
                )
            if e["queries"]:
                lines.append(
                    f"{model:8} {e['hits']:>6} training step: about {e['train_gflop_estimate']:.0f} GFLOP "
                    f"(3 x forward + {e['train_matching_gflop']:.0f} GFLOP of matching costs)"
                )
    return "\n".join(lines)
