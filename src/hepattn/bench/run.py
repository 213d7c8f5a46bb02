"""The benchmark loop: one row per hit count x kernel x precision x compile x part; header, table, JSON.

Rows that cannot run in a setting (e.g. training with flex on CPU) are listed under ``skipped`` with the
reason; rows that raise (e.g. out of memory) under ``failed`` with the error, and the run goes on.
"""

import gc
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

from hepattn.bench import parts as P
from hepattn.bench.cases import CONFIGS, MODELS, Case, build_module, make_case, num_targets, overrides
from hepattn.bench.flops import H200, forward_count, matching_cost_flops, num_queries, total
from hepattn.bench.report import format_flops, format_table, label, scaling, write_json
from hepattn.bench.timing import MB, PeakMemory, measure
from hepattn.models.attention import available_kernels
from hepattn.models.kernels import compiled_flex_on_cpu

DEFAULT_HITS = {"cpu": [1000, 2000, 4000, 8000, 16000], "cuda": [10000, 20000, 40000, 60000]}
DEFAULT_PRECISION = {"cpu": "fp32", "cuda": "bf16"}
DEFAULT_SIZE = {"cpu": "reduced", "cuda": "full"}
# the parts of the tracker, in the order they run (train last: it changes the weights)
TRACKER_PARTS = ("encoder", "decoder", "model", "train")


@dataclass
class Settings:
    """What to measure; ``None`` fields take the device's defaults (see ``resolve``)."""

    device: str | None = None
    hits: list[int] | None = None
    kernels: list[str] | None = None
    parts: list[str] = field(default_factory=lambda: list(P.PARTS))
    precisions: list[str] | None = None
    compiles: list[str] = field(default_factory=lambda: ["off"])
    repeats: int = 3
    warmup: int = 1
    size: str | None = None
    threads: int | None = None
    seed: int = 0
    budget_s: float | None = None  # rows not started by then are skipped

    def resolve(self) -> "Settings":
        """Fill in the device defaults and check the names."""
        dev = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dev == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is visible to torch")
        usable = [k for k in available_kernels() if dev == "cuda" or k != "flash"]  # flash is CUDA only
        # eager flex on CPU builds N x N scores: by default flex runs on CPUs where it compiles correctly only
        default = [k for k in usable if dev == "cuda" or k != "flex" or compiled_flex_on_cpu()]
        kernels = self.kernels or default
        hits, precisions = self.hits or DEFAULT_HITS[dev], self.precisions or [DEFAULT_PRECISION[dev]]
        unknown = [k for k in kernels if k not in usable] + [p for p in self.parts if p not in P.PARTS]
        unknown += [p for p in precisions if p not in P.PRECISIONS]
        unknown += [c for c in self.compiles if c not in P.COMPILE_MODES]
        if unknown:
            known = f"kernels {usable}, parts {list(P.PARTS)}, precisions {list(P.PRECISIONS)}"
            known += f", compile modes {list(P.COMPILE_MODES)}"
            raise SystemExit(f"not available here: {unknown}; {known}")
        size = self.size or DEFAULT_SIZE[dev]
        return Settings(
            dev, hits, kernels, self.parts, precisions, self.compiles, self.repeats, self.warmup, size,
            self.threads, self.seed, self.budget_s,
        )  # fmt: skip


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git() -> str | None:
    """Commit of the source tree, with "+dirty" when it has uncommitted changes."""
    root = Path(__file__).parents[3]
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain"], capture_output=True, text=True)
    except OSError:
        return None
    if commit.returncode:
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def header(settings: Settings) -> dict:
    """Machine, versions, date, settings and how things are measured."""
    device = torch.device(settings.device)
    cuda = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        cuda = {"name": props.name, "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda}
        cuda["memory_gb"] = round(props.total_memory / 2**30, 1)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # AVX2, AVX512: tells CPU kinds apart
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "cuda": cuda,
        "versions": {"python": platform.python_version(), "torch": torch.__version__}
        | {p: _version(p) for p in ("hepattn", "numpy", "scipy", "lapx", "flash-attn")},
        "git": _git(),
        "models": {
            name: {"config": str(CONFIGS / file)}
            | {"overrides": {k: overrides(name, k, settings.size) for k in settings.kernels}}
            for name, file in MODELS.items()
        },
        "timing": f"median of {settings.repeats} calls after {settings.warmup} warm-up call(s); wall clock "
        "between device synchronisations; first_ms is the first warm-up call (compilation included)",
        "peak_memory": PeakMemory(device).method,
        "event": "synthetic (bench.cases.synthetic_event): targets of 7 hits, 10k hits : 1.3k targets "
        "(tracker), 57k : 1.3k (filter), at most one target per query",
        "settings": asdict(settings),
    }


def _cleanup(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class Runner:
    """Runs the rows of one benchmark and collects them."""

    def __init__(self, settings: Settings, log: Callable[[str], None], json_path: str | Path | None = None):
        self.s, self.log, self.json_path = settings, log, json_path
        self.device = torch.device(settings.device)
        self.report = {"header": header(settings), "rows": [], "skipped": [], "failed": []}
        self.deadline = None if settings.budget_s is None else time.monotonic() + settings.budget_s

    def row(self, key: dict, make: Callable[[], Callable[[], object]], gflop: float | None = None) -> None:
        text = label(key)
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.report["skipped"].append(key | {"reason": f"time budget of {self.s.budget_s:g} s spent"})
            self.log(f"skipped {text}: time budget spent")
            return
        try:
            fn = make()
            m = measure(fn, self.device, self.s.repeats, self.s.warmup)
        except P.Skip as e:
            self.report["skipped"].append(key | {"reason": str(e)})
            self.log(f"skipped {text}: {e}")
            return
        except Exception as e:  # an out-of-memory row is a result too: record it and go on
            self.report["failed"].append(key | {"error": f"{type(e).__name__}: {e}"[:400]})
            self.log(f"FAILED {text}: {type(e).__name__}: {str(e)[:200]}")
            return
        finally:
            fn = None
            _cleanup(self.device)
            self.save()
        row = key | {"median_ms": round(m.median_ms, 3), "min_ms": round(m.min_ms, 3)}
        row |= {"first_ms": None if m.first_ms is None else round(m.first_ms, 3)}
        row |= {"times_ms": [round(t, 3) for t in m.times_ms], "base_mb": round(m.base_bytes / MB, 1)}
        row |= {"peak_mb": None if m.peak_bytes is None else round(m.peak_bytes / MB, 1)}
        if gflop is not None:
            row |= {"gflop": round(gflop, 3), "tflop_per_s": round(gflop / m.median_ms, 4)}
        self.report["rows"].append(row)
        self.save()
        self.log(f"{text}: {row['median_ms']:.1f} ms, peak {row['peak_mb']} MB")

    def save(self) -> None:
        """Write the report so far: a run stopped from outside keeps its finished rows."""
        if self.json_path:
            write_json(self.report, self.json_path)

    def tracker_rows(self, case: Case, precision: str, compile: str) -> None:
        ctx = P.autocast(self.device, precision)
        counts = forward_count(case.module.model, case.n_hits, 2 if precision == "bf16" else 4)
        in_decoder = [counts[k].flops for k in ("decoder", "mask_logits", "mask_attention") if k in counts]
        gflop = {
            "encoder": counts["encoder"].flops,
            "decoder": sum(in_decoder),
            "model": total(counts).flops,
            "train": None,
        }
        for part in (p for p in TRACKER_PARTS if p in self.s.parts):
            key = self._key(case.n_hits, case.kernel, part, precision, compile, case)
            build = P.BUILDERS[part]
            flop = None if gflop[part] is None else gflop[part] / 1e9
            self.row(key, lambda b=build: b(case, ctx, compile), flop)

    def filter_rows(self, n: int, kernel: str, precision: str, compile: str) -> None:
        case = make_case("filter", kernel, n, self.s.size, self.device, self.s.seed)
        flop = total(forward_count(case.module.model, n)).flops / 1e9
        key = self._key(n, kernel, "filter", precision, compile, case)
        self.row(key, lambda: P.model(case, P.autocast(self.device, precision), compile), flop)

    def matcher_rows(self, case: Case, precision: str) -> None:
        ctx = P.autocast(self.device, precision)
        inputs = {}
        for solver in P.available_solvers():
            key = self._key(case.n_hits, solver, "matcher", precision, "off", case)

            def make(solver=solver):
                P.check_solver(solver, self.device)  # before a forward pass for nothing
                inputs.setdefault("args", P.matcher_inputs(case, ctx))  # one forward for every solver
                return P.matcher_from_inputs(*inputs["args"], solver=solver)

            self.row(key, make)

    def tracker_case(self, n: int, kernel: str) -> Case:
        return make_case("tracking", kernel, n, self.s.size, self.device, self.s.seed)

    def _key(self, n: int, kernel: str, mode: str, precision: str, compile: str, case: Case) -> dict:
        key = {"hits": n, "kernel": kernel, "mode": mode, "precision": precision}
        key |= {"compile": compile, "model_size": self.s.size}
        queries = case.training_queries if mode in ("train", "matcher") else case.num_queries
        return key | {"queries": queries, "targets": case.num_targets}

    def run(self) -> dict:
        if self.s.threads:
            torch.set_num_threads(self.s.threads)
            self.report["header"]["torch_threads"] = torch.get_num_threads()
        tracker = any(p in self.s.parts for p in (*TRACKER_PARTS, "matcher"))
        for n in self.s.hits:
            for kernel in self.s.kernels:
                case = self.tracker_case(n, kernel) if tracker else None
                for precision in self.s.precisions:
                    for compile in self.s.compiles:
                        if self.device.type == "cpu" or compile != "off":
                            # fresh caches: static shapes recompile per hit count, within dynamo's limit
                            torch._dynamo.reset()
                        if "filter" in self.s.parts:
                            self.filter_rows(n, kernel, precision, compile)
                        if case is not None:
                            self.tracker_rows(case, precision, compile)
                if "matcher" in self.s.parts and kernel == self.s.kernels[0]:
                    self.matcher_rows(case, self.s.precisions[0])
                case = None
                _cleanup(self.device)
        self.report["header"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        self.report["scaling"] = scaling(self.report["rows"])
        self.save()
        return self.report


def run(settings: Settings, log: Callable[[str], None] | None = None, json_path=None) -> dict:
    """Measure every row of ``settings`` (resolved to the device defaults) and return the report.

    With ``json_path`` the report is written after every row, and complete at the end.
    """
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    settings = settings.resolve()
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if settings.device == "cpu" and load >= cpus / 2:
        log(f"note: load average {load:.1f} on {cpus} CPUs at the start: other jobs may slow the timings")
    with warnings.catch_warnings():  # flex mask attention is eager on CPU by design (see models.kernels)
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        return Runner(settings, log, json_path).run()


def flops_report(settings: Settings) -> dict:
    """Analytic counts of one event's forward pass for each model and hit count (see ``bench.flops``)."""
    s = settings.resolve()
    element_bytes = 2 if s.precisions[0] == "bf16" else 4
    out = {"device_floor": H200, "element_bytes": element_bytes, "size": s.size, "models": {}}
    for name in MODELS:
        model = build_module(name, "torch", s.size, torch.device("cpu"))[0].model
        entries = []
        for n in s.hits:
            counts = forward_count(model, n, element_bytes)
            q = None if model.queries is None else num_queries(model, n)
            t = num_targets(name, n, q)
            entry = {"hits": n, "queries": q, "targets": t}
            entry["parts"] = {k: _count(c) for k, c in counts.items()} | {"total": _count(total(counts))}
            matching = matching_cost_flops(model, n, t)
            entry["train_matching_gflop"] = round(matching / 1e9, 2)
            train = total(forward_count(model, n, element_bytes, aux_heads=True)).flops
            entry["train_gflop_estimate"] = round((3 * train + matching) / 1e9, 1)
            entries.append(entry)
        out["models"][name] = entries
    return out


def _count(c) -> dict:
    """GFLOP, MiB moved and floor time (ms) of a ``flops.Count``."""
    gflop, mb, floor_ms = round(c.flops / 1e9, 2), round(c.bytes / MB, 1), round(c.floor_s * 1e3, 4)
    return {"gflop": gflop, "mb": mb, "floor_ms": floor_ms}


def command(settings: Settings, json_path=None, plot_path=None, flops_only: bool = False) -> int:
    """``hepattn bench``: the table on stdout, optionally the JSON and the plot; 1 if a row failed."""
    if flops_only:
        report = flops_report(settings)
        print(format_flops(report))
    else:
        report = run(settings, json_path=json_path)
        print(format_table(report))
    if json_path:
        write_json(report, json_path)
        print(f"wrote {json_path}")
    if plot_path and not flops_only:
        from hepattn.bench.plot import scaling_figure

        Path(plot_path).parent.mkdir(parents=True, exist_ok=True)
        scaling_figure(report).savefig(plot_path, dpi=130)
        print(f"wrote {plot_path}")
    return 1 if report.get("failed") else 0
