"""The ``hepattn`` command line: one entry point, one subcommand per job.

Bad input (a wrong number, a missing or malformed file) ends with one line, ``hepattn: error: ...`` or
``hepattn COMMAND: error: ...``, on stderr and exit status 2; ``hepattn --debug COMMAND`` or
``HEPATTN_DEBUG=1`` shows the traceback instead. Other exceptions are bugs and always show it.
"""

import argparse
import math
import os
import pickle
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
    from hepattn.data.sim.run import TrackFitConfig, default_detectors
    from hepattn.data.sim.run import simulate as run_simulation

    if args.first_event + args.events > 10**9:
        last = args.first_event + args.events - 1
        raise ValueError(
            f"event ids up to {last} do not fit the 9 digits of TrackML ids: lower --first-event"
        )
    detectors = Path(args.detectors) if args.detectors else default_detectors()
    if not detectors.is_file():
        raise FileNotFoundError(
            f"no detectors file at {detectors}: pass --detectors or set HEPATTN_TRACKML_DIR"
        )
    from hepattn.data.sim.generate import GeneratorConfig

    tracks = TrackFitConfig(pt_min=args.track_pt_min) if args.tracks else None
    generator = GeneratorConfig(sigma_z=args.sigma_z)
    made = run_simulation(
        args.out,
        args.events,
        args.pileup,
        args.seed,
        args.process,
        args.workers,
        args.first_event,
        detectors,
        generator=generator,
        tracks=tracks,
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
        raise FileNotFoundError(
            f"no real TrackML folder at {real_dir}: pass --real-dir or set HEPATTN_TRACKML_DIR"
        )
    validate(args.sim_dir, real_dir, args.out, args.real_events, args.real_particles_event)
    print(f"wrote validation.json and overlay plots to {args.out}")
    return 0


def demo(args: argparse.Namespace) -> int:
    """Simulate, train, evaluate the model and the field's baseline on held-out events, report."""
    if args.experiment == "vertexing":
        from hepattn.experiments.vertexing.demo import main as vertexing_demo

        return vertexing_demo(args.out, args.long)
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


def reconstruct(args: argparse.Namespace) -> int:
    """Trained filter and tracker on TrackML events (truth not needed) to a TrackML submission CSV."""
    import torch

    from hepattn.experiments.trackml.submission import load_models, write_reconstruction

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    models = load_models(args.models, args.filter_ckpt, args.tracker_ckpt, device)
    if args.seed_threshold is not None:
        models.settings["seed_threshold"] = args.seed_threshold
    if args.second_pass:
        models.settings["second_pass"] = True
    done = write_reconstruction(args.input, models, args.out, args.predictions)
    print(
        f"wrote {done['hits']:,} hits of {done['events']} events to {done['submission']} "
        f"({done['model_ms_per_event']:.0f} ms per event in the models)"
    )
    if done["predictions"] is not None:
        print(f"the events have truth: score them with `hepattn evaluate {done['predictions']}`")
    return 0


def bench(args: argparse.Namespace) -> int:
    """Time and memory of the shipped TrackML models against the number of hits."""
    from hepattn.bench.run import Settings, command

    settings = Settings(
        args.device, args.hits, args.kernels, args.parts, args.precision, args.compile, args.repeats,
        args.warmup, args.size, args.threads, args.seed, args.budget,
    )  # fmt: skip
    return command(settings, args.json, args.plot, args.flops)


def _number(kind: type, low: float, high: float | None = None, strict: bool = False):
    """An argparse ``type=``: ``kind(text)``, finite, >= ``low`` (> if ``strict``) and < ``high``."""
    rule = f"{'an integer' if kind is int else 'a finite number'} {'>' if strict else '>='} {low}"
    rule += "" if high is None else f" and < {high}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if (
            value is None
            or (kind is float and not math.isfinite(value))
            or value < low
            or (strict and value == low)
            or (high is not None and value >= high)
        ):
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}")
        return value

    return parse


COUNT = _number(int, 1)
NON_NEGATIVE_INT = _number(int, 0)
EVENT_ID = _number(int, 0, 10**9)  # TrackML ids have 9 digits
NON_NEGATIVE = _number(float, 0)
POSITIVE = _number(float, 0, strict=True)


def _list(kind=str):
    return lambda text: [kind(item) for item in text.split(",") if item]


def _out_dir(text: str) -> str:
    """An argparse ``type=`` for a folder to write into: it may not exist yet, but it may not be a file."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    return text


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (without the usage, which ``--help`` shows)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


TRAINING_COMMANDS = ("fit", "validate", "test", "predict")


def lightning_cli(argv: list[str]) -> int:
    """``hepattn fit|validate|test|predict --config CONFIG``: LightningCLI over ``MaskFormerModule``."""
    from hepattn.training.cli import run

    run(argv)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hepattn",
        description="Particle-physics reconstruction as set prediction with one MaskFormer transformer.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (or set HEPATTN_DEBUG=1)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("info", help="versions and available attention kernels").set_defaults(func=info)
    p = commands.add_parser("simulate", help="simulate TrackML events (Pythia 8 + ACTS Fatras)")
    p.add_argument("--events", type=COUNT, required=True, help="number of events")
    p.add_argument("--pileup", type=NON_NEGATIVE, default=200.0, help="mean number of pile-up collisions")
    p.add_argument(
        "--seed", type=NON_NEGATIVE_INT, default=0, help="run seed; event i depends only on (seed, i)"
    )
    p.add_argument("--out", type=_out_dir, required=True, help="output folder")
    p.add_argument("--process", default="ttbar", choices=["ttbar", "minbias", "gun"])
    p.add_argument("--workers", type=COUNT, default=1, help="parallel processes")
    p.add_argument("--first-event", type=EVENT_ID, default=1000, help="id of the first event (for sharding)")
    p.add_argument("--detectors", help="real detectors.csv[.gz] (default: $HEPATTN_TRACKML_DIR)")
    p.add_argument("--tracks", action="store_true", help="also write Kalman-fitted tracks (ACTS)")
    p.add_argument(
        "--track-pt-min", type=NON_NEGATIVE, default=0.5, help="GeV: charged particles above it get a track"
    )
    p.add_argument(
        "--sigma-z",
        type=NON_NEGATIVE,
        default=6.0,
        help="mm: length of the luminous region (6 as in the TrackML events; about 50 at the HL-LHC)",
    )
    p.set_defaults(func=simulate)
    p = commands.add_parser("prep", help="cache TrackML events as prepared arrays for training")
    p.add_argument("--input", required=True, help="folder of TrackML events (hits, particles, truth)")
    p.add_argument(
        "--output", type=_out_dir, required=True, help="folder for the prepared eventNNNNNNNNN.npz files"
    )
    p.add_argument(
        "--volumes", type=NON_NEGATIVE_INT, nargs="+", help="detector volumes to keep (default: all)"
    )
    p.add_argument("--overwrite", action="store_true", help="prepare again events already in --output")
    p.set_defaults(func=prep)
    p = commands.add_parser("validate-sim", help="compare simulated events with the real TrackML files")
    p.add_argument("--sim-dir", required=True, help="folder of simulated TrackML events")
    p.add_argument("--real-dir", help="folder of the real TrackML files (default: $HEPATTN_TRACKML_DIR)")
    p.add_argument(
        "--out", type=_out_dir, required=True, help="folder for validation.json and the overlay plots"
    )
    p.add_argument("--real-events", type=EVENT_ID, nargs="+", default=[2, 3], help="real events with hits")
    p.add_argument("--real-particles-event", type=EVENT_ID, default=1000, help="real event with particles")
    p.set_defaults(func=validate_sim)
    p = commands.add_parser("plot-event", help="draw x-y and r-z views of an event to PNG")
    p.add_argument("prefix", help="event prefix, e.g. DIR/event000000001")
    p.add_argument("--out", help="PNG path (default: ./<event>.png)")
    p.add_argument(
        "--volumes", type=NON_NEGATIVE_INT, nargs="+", help="detector volumes to draw (default: all)"
    )
    p.add_argument("--dpi", type=COUNT, default=120)
    p.set_defaults(func=plot_event)
    p = commands.add_parser(
        "demo", help="simulate, train, evaluate against the field's baseline (CPU, no data)"
    )
    p.add_argument(
        "experiment",
        nargs="?",
        default="trackml",
        choices=["trackml", "vertexing"],
        help="trackml (hit filter and tracker, the default) or vertexing (primary vertices against AMVF)",
    )
    p.add_argument(
        "--out", type=_out_dir, default="hepattn-demo", help="folder for everything the demo makes"
    )
    p.add_argument("--long", action="store_true", help="the 60-minute version, for better numbers")
    p.set_defaults(func=demo)
    p = commands.add_parser("evaluate", help="metrics table and plots of a predictions file")
    p.add_argument("predictions", help="predictions HDF5 written by the demo or `predict`")
    p.add_argument("--out", help="folder for the plots (default: next to the predictions)")
    p.set_defaults(func=evaluate)
    p = commands.add_parser("reconstruct", help="trained models on TrackML events to a submission CSV")
    p.add_argument("--models", help="folder of a finished `hepattn demo` (its reconstruction.json)")
    p.add_argument("--filter-ckpt", help="hit filter checkpoint (replaces the folder's)")
    p.add_argument("--tracker-ckpt", help="tracker checkpoint (replaces the folder's)")
    p.add_argument("--input", required=True, help="folder of TrackML events: hits, and cells when present")
    p.add_argument("--out", required=True, help="submission CSV to write (event_id,hit_id,track_id)")
    p.add_argument("--predictions", help="predictions HDF5 for `hepattn evaluate` when the events have truth")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when visible, else cpu")
    p.add_argument(
        "--seed-threshold", type=float,
        help="only hits with this filter probability seed track candidates (default: the folder's working "
        "point); faster on pile-up events whose filter keeps many doubtful hits, see docs/trackml.md",
    )  # fmt: skip
    p.add_argument(
        "--second-pass", action="store_true",
        help="run the tracker once more on the hits of the weak tracks and those on no track (about 40%% "
        "more time; +1 point of efficiency on the quick demo's events, see docs/trackml.md)",
    )  # fmt: skip
    p.set_defaults(func=reconstruct)
    p = commands.add_parser("bench", help="time and memory of the TrackML models vs hits (table, JSON, plot)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when visible, else cpu")
    p.add_argument("--hits", type=_list(COUNT), help="comma list (default cpu 1000-16000, cuda 10000-60000)")
    p.add_argument("--kernels", type=_list(), help="attention kernels (default: all usable on the device)")
    parts = "encoder,decoder,model,train,matcher,filter"
    p.add_argument("--parts", "--modes", type=_list(), default=parts, help=f"{parts} (default: all)")
    p.add_argument("--precision", type=_list(), help="fp32 and/or bf16 (default cpu fp32, cuda bf16)")
    p.add_argument("--compile", type=_list(), default="off", help="off, on (torch.compile), graphs (CUDA)")
    p.add_argument("--repeats", type=COUNT, default=3, help="timed calls per row (the median is reported)")
    p.add_argument(
        "--warmup", type=NON_NEGATIVE_INT, default=1, help="untimed calls first (compilation, lazy init)"
    )
    p.add_argument("--size", choices=["full", "reduced"], help="model size (default cpu reduced, cuda full)")
    p.add_argument("--threads", type=COUNT, help="CPU threads for torch (default: torch's)")
    p.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="seed of the synthetic events")
    p.add_argument("--budget", type=POSITIVE, help="seconds; rows not started by then are skipped")
    p.add_argument("--json", help="write the report as JSON to this file")
    p.add_argument("--plot", help="write the log-log time and memory vs hits figure (PNG) to this file")
    p.add_argument("--flops", action="store_true", help="only print the analytic FLOP and byte counts")
    p.set_defaults(func=bench)
    for name in TRAINING_COMMANDS:
        commands.add_parser(
            name, help=f"{name} a model from a YAML config (LightningCLI; --help for options)"
        )
    return parser


def dispatch(argv: list[str]) -> int:
    """Parse ``argv`` (without ``--debug``) and run its command."""
    if argv and argv[0] in TRAINING_COMMANDS:
        return lightning_cli(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


# what our code raises for bad input (TrackMLFormatError and CheckpointError are ValueErrors)
EXPECTED_ERRORS = (
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ValueError,
    KeyError,
    SystemExit,
    pickle.UnpicklingError,  # LightningCLI's own weights-only read of --ckpt_path
)


def error_message(err: BaseException) -> str | None:
    """The message of an error our code raises for bad input, or None for a bug or a plain exit status."""
    if isinstance(err, SystemExit):
        return err.code if isinstance(err.code, str) else None
    if isinstance(err, pickle.UnpicklingError):
        from hepattn.training.checkpoint import refusal

        return f"refusing to load the checkpoint: {refusal(err)}"
    if isinstance(err, KeyError):
        # ours carry a sentence; a bare key is a failed lookup in our own code, a bug
        text = err.args[0] if len(err.args) == 1 and isinstance(err.args[0], str) else ""
        return text if " " in text.strip() else None
    return str(err) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    """``hepattn [--debug] COMMAND ...``: the exit status; 2 after a one-line ``hepattn: error: ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("HEPATTN_DEBUG", "") not in ("", "0")
    if argv[:1] == ["--debug"]:  # stripped here, since LightningCLI does not know it
        debug, argv = True, argv[1:]
    try:
        return dispatch(argv)
    except EXPECTED_ERRORS as err:
        message = error_message(err)
        if debug or message is None:
            raise
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        print(f"hepattn: error: {' '.join(lines)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
