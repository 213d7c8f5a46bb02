"""The ``hepattn`` command line: one entry point, one subcommand per job."""

import argparse
import platform
import sys
from pathlib import Path


def info(args: argparse.Namespace) -> int:
    """Print versions and the attention kernels this installation can build."""
    import torch

    from hepattn import __version__
    from hepattn.models.attention import CAPABILITIES, available_kernels

    print(f"hepattn {__version__}, torch {torch.__version__}, python {platform.python_version()}")
    print(f"cuda: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'not available'}")
    usable = set(available_kernels())
    for name, features in CAPABILITIES.items():
        state = "available" if name in usable else "not installed"
        print(f"  kernel {name:6s} {state:14s} supports: {', '.join(sorted(features))}")
    return 0


def simulate(args: argparse.Namespace) -> int:
    """Simulate TrackML events with Pythia 8 and ACTS Fatras (needs the ``sim`` extra)."""
    from hepattn.data.sim.run import default_detectors
    from hepattn.data.sim.run import simulate as run_simulation

    detectors = Path(args.detectors) if args.detectors else default_detectors()
    if not detectors.is_file():
        raise SystemExit(f"no detectors file at {detectors}: pass --detectors or set HEPATTN_TRACKML_DIR")
    made = run_simulation(
        args.out, args.events, args.pileup, args.seed, args.process, args.workers, args.first_event, detectors
    )
    print(f"simulated {len(made)} events into {args.out} ({args.events - len(made)} already there)")
    return 0


def prep(args: argparse.Namespace) -> int:
    """Cache every TrackML event of a folder as prepared .npz arrays."""
    from hepattn.experiments.trackml.prep import prepare_directory

    files = prepare_directory(Path(args.input), Path(args.output), args.volumes, args.overwrite)
    print(f"{len(files)} prepared events in {args.output}")
    return 0


def plot_event(args: argparse.Namespace) -> int:
    """Draw x-y and r-z views of one TrackML event to a PNG."""
    from hepattn.data.trackml import read_event
    from hepattn.metrics.plots import event_display

    prefix = Path(args.prefix)
    has_truth = any(prefix.parent.glob(f"{prefix.name}-truth.csv*"))
    frames = read_event(prefix, ["hits", "truth"] if has_truth else ["hits"])
    hits = frames["hits"]
    if args.volumes:
        keep = hits["volume_id"].isin(args.volumes).to_numpy()
        hits = hits[keep]
    pid = None
    if has_truth:
        pid = hits[["hit_id"]].merge(frames["truth"][["hit_id", "particle_id"]], on="hit_id")["particle_id"]
    title = f"{prefix.name}: {len(hits):,} hits" + ("" if has_truth else " (no truth)")
    out = Path(args.out or f"{prefix.name}.png")
    event_display(hits["x"], hits["y"], hits["z"], pid, title).savefig(out, dpi=args.dpi)
    print(f"wrote {out}")
    return 0


def validate_sim(args: argparse.Namespace) -> int:
    """Compare simulated events with the real TrackML files: tables on stdout, plots and JSON in --out."""
    from hepattn.data.sim.run import default_detectors
    from hepattn.data.sim.validate import validate

    real_dir = Path(args.real_dir) if args.real_dir else default_detectors().parent
    if not real_dir.is_dir():
        raise SystemExit(f"no real TrackML folder at {real_dir}: pass --real-dir or set HEPATTN_TRACKML_DIR")
    validate(args.sim_dir, real_dir, args.out, args.real_events, args.real_particles_event)
    print(f"wrote validation.json and overlay plots to {args.out}")
    return 0


def demo(args: argparse.Namespace) -> int:
    """Simulate, train the hit filter and the tracker, evaluate on held-out events, report."""
    from hepattn.experiments.trackml.demo import LONG, QUICK, run_demo
    from hepattn.experiments.trackml.report import summary_table

    metrics = run_demo(args.out, LONG if args.long else QUICK)
    print(summary_table(metrics))
    print(f"wrote {Path(args.out) / 'metrics.json'}, {Path(args.out) / 'report.md'} and the plots")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Print the metrics of a predictions file and write its plots."""
    from hepattn.experiments.trackml.evaluate import evaluate as run_evaluation
    from hepattn.experiments.trackml.report import summary_table

    out = Path(args.out) if args.out else Path(args.predictions).with_suffix("")
    print(summary_table(run_evaluation(args.predictions, out)))
    print(f"wrote the plots to {out}")
    return 0


def bench(args: argparse.Namespace) -> int:
    """Time and memory of the shipped TrackML models against the number of hits."""
    from hepattn.bench.run import Settings, command

    settings = Settings(
        args.device, args.hits, args.kernels, args.parts, args.precision, args.compile, args.repeats,
        args.warmup, args.size, args.threads, args.seed, args.budget,
    )  # fmt: skip
    return command(settings, args.json, args.plot, args.flops)


def _list(kind=str):
    return lambda text: [kind(item) for item in text.split(",") if item]


TRAINING_COMMANDS = ("fit", "validate", "test", "predict")


def lightning_cli(argv: list[str]) -> int:
    """``hepattn fit|validate|test|predict --config CONFIG``: LightningCLI over ``MaskFormerModule``."""
    from hepattn.training.cli import run

    run(argv)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hepattn",
        description="Particle-physics reconstruction as set prediction with one MaskFormer transformer.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("info", help="versions and available attention kernels").set_defaults(func=info)
    p = commands.add_parser("simulate", help="simulate TrackML events (Pythia 8 + ACTS Fatras)")
    p.add_argument("--events", type=int, required=True, help="number of events")
    p.add_argument("--pileup", type=float, default=200.0, help="mean number of pile-up collisions")
    p.add_argument("--seed", type=int, default=0, help="run seed; event i depends only on (seed, i)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--process", default="ttbar", choices=["ttbar", "minbias", "gun"])
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--first-event", type=int, default=1000, help="id of the first event (for sharding)")
    p.add_argument("--detectors", help="real detectors.csv[.gz] (default: $HEPATTN_TRACKML_DIR)")
    p.set_defaults(func=simulate)
    p = commands.add_parser("prep", help="cache TrackML events as prepared arrays for training")
    p.add_argument("--input", required=True, help="folder of TrackML events (hits, particles, truth)")
    p.add_argument("--output", required=True, help="folder for the prepared eventNNNNNNNNN.npz files")
    p.add_argument("--volumes", type=int, nargs="+", help="detector volumes to keep (default: all)")
    p.add_argument("--overwrite", action="store_true", help="prepare again events already in --output")
    p.set_defaults(func=prep)
    p = commands.add_parser("validate-sim", help="compare simulated events with the real TrackML files")
    p.add_argument("--sim-dir", required=True, help="folder of simulated TrackML events")
    p.add_argument("--real-dir", help="folder of the real TrackML files (default: $HEPATTN_TRACKML_DIR)")
    p.add_argument("--out", required=True, help="folder for validation.json and the overlay plots")
    p.add_argument("--real-events", type=int, nargs="+", default=[2, 3], help="real events with hits")
    p.add_argument("--real-particles-event", type=int, default=1000, help="real event with particles")
    p.set_defaults(func=validate_sim)
    p = commands.add_parser("plot-event", help="draw x-y and r-z views of an event to PNG")
    p.add_argument("prefix", help="event prefix, e.g. DIR/event000000001")
    p.add_argument("--out", help="PNG path (default: ./<event>.png)")
    p.add_argument("--volumes", type=int, nargs="+", help="detector volumes to draw (default: all)")
    p.add_argument("--dpi", type=int, default=120)
    p.set_defaults(func=plot_event)
    p = commands.add_parser("demo", help="simulate, train filter and tracker, evaluate (CPU, no data needed)")
    p.add_argument("--out", default="hepattn-demo", help="folder for everything the demo makes")
    p.add_argument("--long", action="store_true", help="the 60-minute version, for better numbers")
    p.set_defaults(func=demo)
    p = commands.add_parser("evaluate", help="metrics table and plots of a predictions file")
    p.add_argument("predictions", help="predictions HDF5 written by the demo or `predict`")
    p.add_argument("--out", help="folder for the plots (default: next to the predictions)")
    p.set_defaults(func=evaluate)
    p = commands.add_parser("bench", help="time and memory of the TrackML models vs hits (table, JSON, plot)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when visible, else cpu")
    p.add_argument("--hits", type=_list(int), help="comma list (default cpu 1000-16000, cuda 10000-60000)")
    p.add_argument("--kernels", type=_list(), help="attention kernels (default: all usable on the device)")
    parts = "encoder,decoder,model,train,matcher,filter"
    p.add_argument("--parts", "--modes", type=_list(), default=parts, help=f"{parts} (default: all)")
    p.add_argument("--precision", type=_list(), help="fp32 and/or bf16 (default cpu fp32, cuda bf16)")
    p.add_argument("--compile", type=_list(), default="off", help="off, on (torch.compile), graphs (CUDA)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per row (the median is reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (compilation, lazy init)")
    p.add_argument("--size", choices=["full", "reduced"], help="model size (default cpu reduced, cuda full)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic events")
    p.add_argument("--budget", type=float, help="seconds; rows not started by then are skipped")
    p.add_argument("--json", help="write the report as JSON to this file")
    p.add_argument("--plot", help="write the log-log time and memory vs hits figure (PNG) to this file")
    p.add_argument("--flops", action="store_true", help="only print the analytic FLOP and byte counts")
    p.set_defaults(func=bench)
    for name in TRAINING_COMMANDS:
        commands.add_parser(
            name, help=f"{name} a model from a YAML config (LightningCLI; --help for options)"
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TRAINING_COMMANDS:
        return lightning_cli(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
