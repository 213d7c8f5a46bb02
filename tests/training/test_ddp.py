"""The toy config trains with Lightning's DDP on two CPU processes (gloo), through our CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import hepattn
from hepattn.training.checkpoint import load_checkpoint

CIRCLES = Path(hepattn.__file__).parent / "configs" / "toy" / "circles.yaml"
NUM_TRAIN, BATCH, PROCESSES = 16, 2, 2

# Every process writes its weights at the end; DDP averages gradients, so the replicas must agree.
SAVE_WEIGHTS = """
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback


class SaveWeights(Callback):
    def __init__(self, out: str):
        self.out = Path(out)

    def on_train_end(self, trainer, pl_module):
        torch.save(pl_module.state_dict(), self.out / f"rank{trainer.global_rank}.pt")
"""


def subprocess_env(helpers: Path) -> dict[str, str]:
    """Our environment, plus the helper modules in ``helpers`` and one thread per process (2-core CI)."""
    path = [str(helpers), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> tuple[Path, str]:
    """One short DDP fit shared by the tests below: (its output folder, its stdout and stderr)."""
    out = tmp_path_factory.mktemp("ddp")
    (out / "save_weights.py").write_text(SAVE_WEIGHTS)
    env = subprocess_env(out)
    save = {"class_path": "save_weights.SaveWeights", "init_args": {"out": str(out)}}
    command = [
        sys.executable, "-m", "hepattn.cli", "fit", f"--config={CIRCLES}",
        f"--trainer.default_root_dir={out}", "--trainer.accelerator=cpu", "--trainer.strategy=ddp",
        f"--trainer.devices={PROCESSES}",
        "--trainer.max_epochs=1", "--trainer.max_steps=-1", "--trainer.val_check_interval=1.0",
        "--trainer.log_every_n_steps=1", "--trainer.enable_progress_bar=false",
        f"--data.init_args.num_train={NUM_TRAIN}", f"--data.init_args.batch_size={BATCH}",
        f"--data.init_args.num_val={PROCESSES * BATCH}",
        "--model.model.init_args.encoder.init_args.depth=1",
        "--model.model.init_args.decoder.init_args.depth=1",
        f"--trainer.callbacks+={json.dumps(save)}",
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    return out, run.stdout + run.stderr


def test_toy_config_trains_with_ddp_on_two_cpu_processes(ddp_run):
    out, log = ddp_run
    assert f"Starting with {PROCESSES} processes" in log

    # the distributed sampler splits the events and batch_size is per process: an epoch is 16 / (2 * 2) steps
    steps = NUM_TRAIN // (PROCESSES * BATCH)
    (last,) = out.rglob("last.ckpt")
    assert load_checkpoint(last)["global_step"] == steps
    (metrics,) = out.rglob("metrics.csv")  # only rank 0 logs
    logged = pd.read_csv(metrics)
    assert sorted(logged.dropna(subset=["train_loss"])["step"]) == list(range(steps))
    assert logged["val_loss"].notna().any()

    ranks = [torch.load(out / f"rank{r}.pt", map_location="cpu") for r in range(PROCESSES)]
    for name, weight in ranks[0].items():
        assert torch.equal(weight, ranks[1][name]), f"replicas differ in {name}"


def test_ddp_validation_losses_are_averaged_over_processes(ddp_run):
    # Lightning warns for every epoch-level metric that is logged from rank 0's shard only
    _, log = ddp_run
    assert "sync_dist=True" not in log
