"""Checkpoints load with ``weights_only``: ours load whole, a file that would run code on load is refused."""

import os
from pathlib import Path

import pytest
import torch

import hepattn
from hepattn.cli import main
from hepattn.training.checkpoint import CheckpointError, load_checkpoint
from hepattn.training.cli import build, load_weights

CIRCLES = Path(hepattn.__file__).parent / "configs" / "toy" / "circles.yaml"
SMALL = [
    "--model.model.init_args.encoder.init_args.depth=1",
    "--model.model.init_args.decoder.init_args.depth=1",
]
TINY = [
    *SMALL, "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", "--trainer.max_steps=2",
    "--trainer.enable_model_summary=false", "--trainer.val_check_interval=2",
    "--trainer.num_sanity_val_steps=0", "--data.init_args.num_train=8", "--data.init_args.num_val=2",
    "--data.init_args.batch_size=2",
]  # fmt: skip


class RunsACommand:
    """Unpickling this calls ``os.system``, which touches ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_runs_code_on_load_is_refused(tmp_path):
    marker, path = tmp_path / "ran", tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "evil": RunsACommand(marker)}, path)
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: refusing to load it: .*weights_only.*system"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"evil\.ckpt"):
        load_weights(torch.nn.Linear(1, 1), path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "not a readable torch checkpoint"), (b"version https://git-lfs.github.com/spec/v1\n", "refusing")],
    ids=["empty", "git-lfs pointer"],
)
def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path, content, problem):
    path = tmp_path / "last.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"^{tmp_path}/last\.ckpt: {problem}"):
        load_checkpoint(path)


def test_missing_checkpoint_and_missing_state_dict(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.ckpt")
    torch.save({"global_step": 3}, tmp_path / "steps.ckpt")
    with pytest.raises(CheckpointError, match="no 'state_dict'"):
        load_weights(torch.nn.Linear(1, 1), tmp_path / "steps.ckpt")


def test_a_trained_toy_checkpoint_loads_whole(tmp_path):
    assert main(["fit", f"--config={CIRCLES}", f"--trainer.default_root_dir={tmp_path}", *TINY]) == 0
    (last,) = tmp_path.rglob("last.ckpt")
    checkpoint = load_checkpoint(last)
    assert checkpoint["global_step"] == 2 and checkpoint["optimizer_states"] and checkpoint["lr_schedulers"]
    module = load_weights(build([CIRCLES], SMALL).model, last)
    assert not module.training
    loaded = module.state_dict()
    assert loaded.keys() == checkpoint["state_dict"].keys()
    assert all(torch.equal(loaded[k], v) for k, v in checkpoint["state_dict"].items())
