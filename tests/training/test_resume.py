"""A fit killed mid-run resumes from ``last.ckpt`` at the saved step, with its optimizer and schedule."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import hepattn
from hepattn.training.checkpoint import load_checkpoint

CIRCLES = Path(hepattn.__file__).parent / "configs" / "toy" / "circles.yaml"
TINY = [
    "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", "--trainer.log_every_n_steps=1",
    "--trainer.enable_model_summary=false", "--trainer.limit_val_batches=0", "--data.init_args.num_train=16",
    "--trainer.val_check_interval=1.0", "--data.init_args.batch_size=2",
    "--model.model.init_args.encoder.init_args.depth=1", "--model.model.init_args.decoder.init_args.depth=1",
]  # fmt: skip
MAX_STEPS, EVERY, HANG_AT = 8, 2, 5  # checkpoints at steps 2 and 4; the first run never gets past 5

# Checkpoint every EVERY steps (no monitor: there is no validation) and log the learning rate per step.
OVERRIDE = f"""
trainer:
  max_steps: {MAX_STEPS}
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {{save_last: true, monitor: null, every_n_train_steps: {EVERY}}}
    - class_path: lightning.pytorch.callbacks.LearningRateMonitor
      init_args: {{logging_interval: step}}
"""

# Stands in for a node failure: training stops making progress at a known step until it is killed,
# so the test never races a run that finishes before the kill.
HANG = """
import time

from lightning.pytorch.callbacks import Callback


class HangAt(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == self.step:
            time.sleep(3600)
"""


def subprocess_env(helpers: Path) -> dict[str, str]:
    """Our environment, plus the helper modules in ``helpers`` and one thread per process (2-core CI)."""
    path = [str(helpers), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1"}


def fit(root: Path, *extra: str) -> list[str]:
    config = root / "override.yaml"
    return [
        sys.executable, "-m", "hepattn.cli", "fit", f"--config={CIRCLES}", f"--config={config}",
        f"--trainer.default_root_dir={root}", *TINY, *extra,
    ]  # fmt: skip


def global_step(path: Path) -> int | None:
    """The checkpoint's step, or None while it is missing or still being written."""
    try:
        return load_checkpoint(path)["global_step"]
    except (FileNotFoundError, EOFError, RuntimeError, KeyError):
        return None


def wait_for_step(process: subprocess.Popen, checkpoint: Path, step: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (global_step(checkpoint) or 0) < step:
        if process.poll() is not None:
            pytest.fail(f"training exited ({process.returncode}) before step {step}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no checkpoint at step {step} after {timeout} s:\n{log.read_text()}")
        time.sleep(0.2)


def expected_lr(step: int) -> float:
    """The learning rate the config's schedule gives after ``step`` optimizer steps (of ``MAX_STEPS``)."""
    config = yaml.safe_load(CIRCLES.read_text())["model"]
    optimizer = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], **config["optimizer"]["init_args"])
    settings = {"total_steps": MAX_STEPS} | config["lr_scheduler"]["init_args"]  # the run's max_steps
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, **settings)
    for _ in range(step):
        optimizer.step()
        schedule.step()
    return schedule.get_last_lr()[0]


def test_killed_fit_resumes_from_last_checkpoint(tmp_path):
    (tmp_path / "override.yaml").write_text(OVERRIDE)
    (tmp_path / "hang.py").write_text(HANG)
    env = subprocess_env(tmp_path)
    hang = "--trainer.callbacks+=" + json.dumps({"class_path": "hang.HangAt", "init_args": {"step": HANG_AT}})
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen(fit(tmp_path, hang), stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for_step(first, last, HANG_AT - 1, log, timeout=120)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    saved = load_checkpoint(last)
    assert saved["global_step"] == HANG_AT - 1

    resumed = subprocess.run(
        fit(tmp_path, f"--ckpt_path={last}"), capture_output=True, text=True, env=env, timeout=180
    )
    assert resumed.returncode == 0, resumed.stderr

    run = tmp_path / "lightning_logs" / "version_1"
    metrics = pd.read_csv(run / "metrics.csv")
    trained = sorted(metrics.dropna(subset=["train_loss"])["step"])
    assert trained == list(range(saved["global_step"], MAX_STEPS)), "did not continue from the saved step"
    final = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert final["global_step"] == MAX_STEPS
    # the schedule continued: the first step after resuming used the step-4 rate, not the initial one
    lr = metrics.dropna(subset=["lr-AdamW"]).set_index("step")["lr-AdamW"]
    assert lr[saved["global_step"]] == pytest.approx(expected_lr(saved["global_step"]), rel=1e-6)
    assert lr[saved["global_step"]] != pytest.approx(expected_lr(0), rel=1e-3)
    # AdamW's moments came back too: its step count went on from the checkpoint's
    adam_steps = {int(s["step"]) for s in final["optimizer_states"][0]["state"].values()}
    assert adam_steps == {MAX_STEPS}
