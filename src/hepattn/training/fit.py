"""Train a model from shipped configs with its own ``hepattn fit`` command, as every demo does."""

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from hepattn.training.checkpoint import load_checkpoint


def config(name: str) -> Path:
    """Path of a shipped config, e.g. ``trackml/filter_small.yaml``."""
    return Path(str(resources.files("hepattn") / "configs" / name))


def last_checkpoint(root: Path) -> Path | None:
    """The newest ``last.ckpt`` under a training folder (``lightning_logs/version_N/checkpoints``)."""
    found = list(root.glob("lightning_logs/version_*/checkpoints/last.ckpt"))
    return max(found, key=lambda p: int(p.parents[1].name.removeprefix("version_")), default=None)


def train(
    configs: list[Path],
    data: dict[str, Path],
    steps: int,
    root: Path,
    processes: int = 1,
    overrides: Sequence[str] = (),
) -> tuple[Path, float]:
    """Fit a model from shipped configs on the given folders with ``hepattn fit``, or finish a fit.

    The fit runs as its own command, as a user would run it; with ``processes`` > 1 as Lightning DDP on
    that many CPU processes of one thread each (each step then sees one event per process). A
    ``last.ckpt`` already under ``root`` is resumed (optimizer, schedule and step included); one that
    reached ``steps`` is returned as it is. Returns the last checkpoint and the seconds spent training,
    earlier interrupted attempts included (kept in ``root/train_seconds.txt``).
    """
    previous = last_checkpoint(root)
    clock = root / "train_seconds.txt"
    spent = float(clock.read_text()) if clock.is_file() else 0.0
    if previous is not None:
        step = load_checkpoint(previous)["global_step"]
        if step >= steps:
            return previous, spent
    command = [sys.executable, "-m", "hepattn.cli", "fit", *[f"--config={c}" for c in configs]]
    command += [f"--data.init_args.{split}_dir={path}" for split, path in data.items()]
    command += [
        f"--trainer.max_steps={steps}",
        f"--model.lr_scheduler.init_args.total_steps={steps}",
        f"--trainer.default_root_dir={root}",
        f"--trainer.val_check_interval={steps}",
        "--trainer.num_sanity_val_steps=0",  # no check before training: the shipped configs are tested
        *overrides,
    ]
    env = dict(os.environ)
    if processes > 1:
        command += ["--trainer.accelerator=cpu", "--trainer.strategy=ddp", f"--trainer.devices={processes}"]
        env["OMP_NUM_THREADS"] = "1"
    if previous is not None:
        command.append(f"--ckpt_path={previous}")
    start = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    try:
        run = subprocess.run(command, env=env)
    finally:
        clock.write_text(f"{spent + time.perf_counter() - start:.3f}\n")
    last = last_checkpoint(root)
    if run.returncode or last is None:
        raise RuntimeError(f"training in {root} failed (exit status {run.returncode}): {shlex.join(command)}")
    return last, float(clock.read_text())
