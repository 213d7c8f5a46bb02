"""``hepattn demo``: simulate, prepare, train the filter and the tracker, evaluate, report.

Everything the demo makes stays under its output folder: the TrackML events, the prepared arrays,
the filtered events, both models' checkpoints and logs, the predictions, the TrackML submission of the
test split, ``metrics.json``, the plots and ``report.md``. Each stage skips work that is already done
(complete events, prepared files), so a rerun after an interruption goes on where it stopped.
"""

import json
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from hepattn.experiments.trackml.evaluate import evaluate
from hepattn.experiments.trackml.prep import prepare_directory
from hepattn.experiments.trackml.reco import filter_directory
from hepattn.experiments.trackml.report import write_report
from hepattn.experiments.trackml.submission import MANIFEST, load_models, write_reconstruction
from hepattn.training.cli import build, load_weights
from hepattn.training.fit import config, train

PIXEL_VOLUMES = [7, 8, 9]
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run. ``QUICK`` fits 20 minutes on 2 CPU cores, ``LONG`` 60 minutes.

    ``QUICK`` beat its goal (80% at <= 10% fakes) by 6 points at pile-up 10, so it runs at pile-up 20
    (a third more hits per event) with fewer training steps and feed-forward blocks half as wide as the
    configs' (faster per step, and no worse), sized to fit 20 minutes also in the hours when the machine
    runs 1.7 x slow; ``LONG``, at its goal, stays at pile-up 10 with the configs' widths
    (docs/trackml.md).
    """

    pileup: float = 20.0
    train_events: int = 250
    val_events: int = 20
    test_events: int = 50
    filter_steps: int = 450  # optimizer steps of `processes` events each
    tracker_steps: int = 900
    threshold: float = 0.1  # filter probability above which a hit goes into the tracker's training data
    reco_threshold: float = 0.03  # ... and to the tracker at reconstruction (chosen on a tuning sample)
    track_threshold: float = 0.02  # validity probability of a track candidate (chosen on the val split)
    seed_threshold: float = 0.0  # hits with a lower filter probability seed no candidate (0: all seed)
    one_hit_per_module: bool = True  # a mask keeps one hit per module (+12 points above 5 GeV, no training)
    join_max_hits: int = 6  # pieces of one particle (jet cores) of up to this many hits are joined ...
    join_xy: float = 0.3  # mm ... when together they fit a helix this well (chosen on val, docs/trackml.md)
    join_z: float = 0.6  # mm
    extend_xy: float = 0.3  # mm; free hits join the track they extend along a helix this well (on val)
    extend_z: float = 0.6  # mm
    min_track_hits: int = 3  # shorter candidates are fragments; their hits stay unassigned
    min_mask_prob: float = 0.0  # tracks with a less sure mask are dropped (0: none; see docs/trackml.md)
    fit_max_hits: int = 4  # tracks this short must fit a helix through the beam line (chosen on val)
    fit_max_xy: float = 3.0  # mm
    fit_max_z: float = 6.0  # mm
    rank_fit_xy: float = 1.0  # mm; candidates fitting a helix this well are kept first (chosen on val)
    rank_fit_z: float = 2.0  # mm
    refine_max_removed: int = 5  # hits a track may lose to fit a helix within refine_xy, refine_z (on val)
    refine_xy: float = 1.0  # mm
    refine_z: float = 2.0  # mm
    recover_xy: float = 1.0  # mm; unused candidates make tracks of free hits that fit this well (on tune)
    recover_z: float = 2.0  # mm
    min_pt: float = 1.0  # GeV, reconstructable particles
    seed: int = 1
    workers: int = 2  # simulation processes
    processes: int = 2  # training processes (Lightning DDP on the CPU); each step sees one event per process
    mlp_ratio: float = 2.0  # feed-forward width over the model width, filter and tracker (the configs say 4)
    # Raised when the shipped configs the demo trains change (2: the filter learns events without cells,
    # the tracker samples its training seeds by pT; 3: the tracker reads eta_pv), so that a folder of
    # older models is not mixed in.
    configs_version: int = 3


# What the events and the models depend on; the other settings only change the reconstruction.
TRAINING_FIELDS = ("pileup", "train_events", "val_events", "test_events", "filter_steps", "tracker_steps",
                   "threshold", "seed", "processes", "mlp_ratio", "configs_version")  # fmt: skip
# The value a training field had in runs made before it existed (their settings.json lacks it).
EARLIER_DEFAULTS = {"mlp_ratio": 4.0, "configs_version": 1}

# The settings that `Reconstruction` takes under the same name.
RECONSTRUCTION_FIELDS = ("track_threshold", "seed_threshold", "one_hit_per_module", "join_max_hits",
                         "join_xy", "join_z", "extend_xy", "extend_z", "min_mask_prob", "fit_max_hits",
                         "fit_max_xy", "fit_max_z", "rank_fit_xy", "rank_fit_z", "refine_max_removed",
                         "refine_xy", "refine_z", "recover_xy", "recover_z")  # fmt: skip

QUICK = DemoSettings()
# --long's validity threshold and fit cut were chosen on a tuning sample of 100 more events (docs/trackml.md)
LONG = DemoSettings(
    pileup=10.0,
    train_events=800,
    test_events=100,
    filter_steps=2500,
    tracker_steps=6000,
    mlp_ratio=4.0,
    track_threshold=0.003,
    fit_max_xy=2.0,
    fit_max_z=4.0,
)


def simulate_splits(out: Path, s: DemoSettings, detectors: Path) -> None:
    from hepattn.data.sim.run import simulate_ranges

    first = 100_000  # disjoint event-id ranges per split, so each split is its own reproducible sample
    ranges = []
    for split, n in zip(SPLITS, (s.train_events, s.val_events, s.test_events), strict=True):
        ranges.append((out / "events" / split, first, n))
        first += n
    simulate_ranges(ranges, s.pileup, s.seed, "ttbar", s.workers, detectors)


def model_overrides(s: DemoSettings, decoder: bool) -> list[str]:
    """Config overrides for the settings that shape a model: the feed-forward width of its blocks."""
    blocks = ["encoder", "decoder"] if decoder else ["encoder"]
    return [f"--model.model.init_args.{b}.init_args.mlp_ratio={s.mlp_ratio}" for b in blocks]


def load(configs: list[Path], checkpoint: Path, overrides: Sequence[str] = ()):
    return load_weights(build(configs, overrides).model, checkpoint)


def check_settings(out: Path, s: DemoSettings) -> None:
    """Refuse to mix runs: a folder holds the events and models of one set of ``TRAINING_FIELDS``.

    A rerun with the same ones resumes or reuses every stage; the reconstruction settings may change.
    """
    path = out / "settings.json"
    wanted = {key: getattr(s, key) for key in TRAINING_FIELDS}
    if path.is_file():
        held = json.loads(path.read_text())
        held = EARLIER_DEFAULTS | held
        new_stages = {key: value for key, value in wanted.items() if key not in held}  # trained now
        held |= new_stages
        differ = {key: (held.get(key), value) for key, value in wanted.items() if held.get(key) != value}
        if differ:
            said = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in differ.items())
            raise ValueError(f"{out} holds a demo run with other settings ({said}); choose another --out")
        if new_stages:
            path.write_text(json.dumps(held, indent=2) + "\n")
    else:
        path.write_text(json.dumps(wanted, indent=2) + "\n")


def reconstruction_settings(s: DemoSettings) -> dict:
    """The keyword arguments of ``reco.Reconstruction`` that ``s`` sets: its working point."""
    return {"threshold": s.reco_threshold, "min_hits": s.min_track_hits} | {
        key: getattr(s, key) for key in RECONSTRUCTION_FIELDS
    }


def write_manifest(out: Path, s: DemoSettings, filters: list[Path], tracker: Path) -> Path:
    """``out/reconstruction.json``: the checkpoints, volumes and working point of ``hepattn reconstruct``."""
    manifest = {
        "filters": [p.relative_to(out).as_posix() for p in filters],
        "tracker": tracker.relative_to(out).as_posix(),
        "volumes": PIXEL_VOLUMES,
        "min_pt": s.min_pt,
        "settings": reconstruction_settings(s),
    }
    path = out / MANIFEST
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(path)
    return path


def run_demo(out: str | Path, s: DemoSettings = QUICK, detectors: Path | None = None) -> dict:
    """Run every stage into ``out``; returns (and writes) the metrics."""
    from hepattn.data.sim.run import default_detectors

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, s)
    timing = {}
    start = time.perf_counter()
    simulate_splits(out, s, detectors or default_detectors())
    timing["simulate_s"] = time.perf_counter() - start

    start = time.perf_counter()
    for split in SPLITS:
        prepare_directory(out / "events" / split, out / "prepared" / split, PIXEL_VOLUMES)
    timing["prepare_s"] = time.perf_counter() - start

    filter_configs = [config("trackml/filter_small.yaml")]
    data = {split: out / "prepared" / split for split in ("train", "val")}
    shape = model_overrides(s, decoder=False)
    filter_ckpt, seconds = train(filter_configs, data, s.filter_steps, out / "filter", s.processes, shape)
    timing["train_filter_s"] = seconds

    hit_filter = load(filter_configs, filter_ckpt, shape)
    start = time.perf_counter()
    for split in ("train", "val"):
        filter_directory(hit_filter, out / "prepared" / split, out / "filtered" / split, s.threshold)
    timing["filter_events_s"] = time.perf_counter() - start

    tracker_configs = [config("trackml/tracking_small.yaml")]
    data = {split: out / "filtered" / split for split in ("train", "val")}
    shape = model_overrides(s, decoder=True)
    tracker_ckpt, seconds = train(tracker_configs, data, s.tracker_steps, out / "tracker", s.processes, shape)
    timing["train_tracker_s"] = seconds

    write_manifest(out, s, [filter_ckpt], tracker_ckpt)
    models = load_models(out)  # as `hepattn reconstruct --models` loads them
    result = write_reconstruction(
        out / "events" / "test", models, out / "submission.csv", out / "predictions.h5"
    )
    timing["inference_ms_per_event"] = result["model_ms_per_event"]
    predictions = result["predictions"]
    metrics = evaluate(predictions, out / "plots")
    plots = [Path(p) for p in metrics.pop("plots")]
    metrics["timing"] = {k: round(v, 3) for k, v in timing.items()}
    metrics["settings"] = asdict(s)
    metrics["machine"] = {
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_report(out, metrics, plots)
    return metrics
