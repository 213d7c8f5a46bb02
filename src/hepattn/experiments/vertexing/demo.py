"""``hepattn demo vertexing``: simulate events with fitted tracks, train the vertex finder, compare with AMVF.

Everything stays under the output folder: the events (``events/{train,val,test}``), the model's training
folder, per method the vertices and track links of the test events (``model/``, ``amvf_gaussian/``,
``amvf_grid/``, ``truth_fit/``), ``metrics.json``, the plots and ``report.md``. Simulation and training
skip what is already done, so a rerun after an interruption goes on where it stopped.
"""

import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from hepattn.experiments.vertexing import baselines
from hepattn.experiments.vertexing.evaluate import plot_binned, plot_residuals, score, z_pulls
from hepattn.experiments.vertexing.events import read_events
from hepattn.experiments.vertexing.outputs import write_method
from hepattn.experiments.vertexing.reconstruct import reconstruct
from hepattn.experiments.vertexing.report import write_report
from hepattn.training.cli import build, load_weights
from hepattn.training.fit import config, train

SPLITS = ("train", "val", "test")
CONFIG = "vertexing/vertexing_small.yaml"


@dataclass(frozen=True)
class VertexingSettings:
    """Sizes of one demo run: ``QUICK`` fits 20 minutes on 2 CPU cores, ``LONG`` (pile-up 200) 60.

    The luminous region has sigma_z 50 mm, the HL-LHC's (TrackML's events have 6 mm: at pile-up 60 that puts
    four collisions in each mm at the centre, 2.5 times the HL-LHC's peak density at pile-up 200).
    Particles below ``generated_pt_min`` are not simulated: they make no track above ``track_pt_min``.
    """

    pileup: float = 60.0
    sigma_z: float = 50.0  # mm
    generated_pt_min: float = 0.4  # GeV
    track_pt_min: float = 0.5  # GeV
    train_events: int = 500
    val_events: int = 10
    test_events: int = 50
    steps: int = 6000
    seed: int = 1
    workers: int = 2  # simulation processes
    processes: int = 1  # training processes (Lightning DDP on the CPU): one, a step takes 0.1 s


QUICK = VertexingSettings()
# at pile-up 200 an event has about 3.3 times the tracks, and a training step takes about 3 times as long
LONG = VertexingSettings(pileup=200.0, train_events=400, steps=4000)


def simulate_splits(out: Path, s: VertexingSettings, detectors: Path | None) -> None:
    from hepattn.data.sim.generate import GeneratorConfig
    from hepattn.data.sim.run import TrackFitConfig, simulate_ranges

    first = 200_000  # disjoint event ids per split
    ranges = []
    for split, n in zip(SPLITS, (s.train_events, s.val_events, s.test_events), strict=True):
        ranges.append((out / "events" / split, first, n))
        first += n
    generator = GeneratorConfig(sigma_z=s.sigma_z, pt_min=s.generated_pt_min)
    tracks = TrackFitConfig(pt_min=s.track_pt_min)
    simulate_ranges(ranges, s.pileup, s.seed, "ttbar", s.workers, detectors, generator, tracks=tracks)


def run_demo(out: str | Path, s: VertexingSettings = QUICK, detectors: Path | None = None) -> dict:
    """Every stage of the demo; returns ``metrics.json``'s content."""
    from hepattn.data.sim.acts_backend.vertexing import SEEDERS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "settings.json").write_text(json.dumps(asdict(s), indent=2) + "\n")
    timing = {}
    start = time.perf_counter()
    simulate_splits(out, s, detectors)
    timing["simulate_s"] = time.perf_counter() - start

    data = {split: out / "events" / split for split in ("train", "val")}
    checkpoint, timing["train_s"] = train(
        [config(CONFIG)], data, s.steps, out / "model_training", s.processes
    )

    events = read_events(out / "events" / "test")
    model = load_weights(build([config(CONFIG)]).model, checkpoint).model
    results = {}
    start = time.perf_counter()
    results["model"] = reconstruct(model, events)
    timing["model_ms_per_event"] = 1000 * (time.perf_counter() - start) / len(events)
    for seeder in SEEDERS:
        start = time.perf_counter()
        results[f"amvf_{seeder}"] = baselines.amvf([e.tracks for e in events], seeder)
        timing[f"amvf_{seeder}_ms_per_event"] = 1000 * (time.perf_counter() - start) / len(events)
    results["truth_fit"] = [baselines.truth_fit(e.tracks, e.track_truth) for e in events]

    figures, matched = {}, {}
    for method, found in results.items():
        write_method(out / method, events, found)
        figures[method], matched[method] = score(events, found)
        figures[method] |= z_pulls(found, matched[method])
    best = max(SEEDERS, key=lambda k: figures[f"amvf_{k}"]["efficiency"])
    plots = [*plot_binned(matched, out), plot_residuals(matched, out)]
    common = {"num_test_events": len(events), "pileup": s.pileup, "sigma_z_mm": s.sigma_z}
    metrics = {
        "model": figures["model"] | common,
        "amvf": figures[f"amvf_{best}"] | common | {"seeder": best},
        "truth_fit": figures["truth_fit"] | common,
        **{f"amvf_{k}": figures[f"amvf_{k}"] | common for k in SEEDERS},
        "timing": {k: round(v, 3) for k, v in timing.items()},
        "settings": asdict(s),
        "machine": {"cpu_threads": torch.get_num_threads(), "torch": torch.__version__}
        | {"python": platform.python_version()},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_report(out, metrics, plots)
    return metrics


def main(out: str | Path, long: bool = False) -> int:
    """``hepattn demo vertexing``: run, print the table, say where everything went."""
    from hepattn.experiments.vertexing.report import summary_table

    metrics = run_demo(out, LONG if long else QUICK)
    print(summary_table(metrics))
    print(f"wrote {Path(out) / 'metrics.json'}, {Path(out) / 'report.md'} and the plots")
    return 0
