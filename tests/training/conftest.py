from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from hepattn.training.checkpoint import load_checkpoint
from hepattn.training.cli import build


@pytest.fixture
def assert_trained():
    """``check(root, configs, overrides, steps)``: the fit under ``root`` really trained.

    Its last checkpoint holds ``steps`` optimizer steps, a learning-rate schedule of ``steps`` steps (set
    by ``trainer.max_steps`` alone), finite weights, and every parameter of the encoder and decoder moved
    from the weights the same config and seed initialise.
    """

    def check(root: Path, configs: Sequence[Path], overrides: Sequence[str], steps: int) -> None:
        (last,) = root.rglob("last.ckpt")
        checkpoint = load_checkpoint(last)
        assert checkpoint["global_step"] == steps
        (schedule,) = checkpoint["lr_schedulers"]
        assert schedule["total_steps"] == steps
        trained = checkpoint["state_dict"]
        assert all(v.isfinite().all() for v in trained.values() if v.is_floating_point())
        initial = build(configs, overrides).model.state_dict()
        assert initial.keys() == trained.keys()
        moved = {k: not torch.equal(initial[k], trained[k]) for k in initial}
        core = [k for k in moved if k.startswith(("model.encoder.", "model.decoder.")) and "weight" in k]
        assert core and all(moved[k] for k in core), [k for k in core if not moved[k]]

    return check
