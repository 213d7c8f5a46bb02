"""LightningCLI for ``MaskFormerModule``: the parser that reads our YAML configs.

``hepattn fit|validate|test|predict`` runs it as a command; ``build`` gives the instantiated module,
data module and trainer to Python code (the demo), from the same configs and overrides.
"""

from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch.cli import LightningCLI

from hepattn.training.module import MaskFormerModule


class HepattnCLI(LightningCLI):
    """LightningCLI over ``MaskFormerModule``; any data module (``subclass_mode_data``).

    Each value is said once: the input networks name the fields they read (the data modules deliver
    every field they have), and a learning-rate schedule left without ``total_steps`` runs for the
    trainer's ``max_steps`` (``MaskFormerModule.make_scheduler``). Values the model repeats, such as
    its width, are YAML anchors in the shipped configs; ``MaskFormer`` checks that its parts agree on it.
    """


def run(argv: list[str]) -> None:
    """``fit|validate|test|predict --config CONFIG [overrides]``."""
    torch.set_float32_matmul_precision("high")
    HepattnCLI(MaskFormerModule, subclass_mode_data=True, save_config_kwargs={"overwrite": True}, args=argv)


def build(configs: Sequence[str | Path], overrides: Sequence[str] = ()) -> HepattnCLI:
    """Parse configs (later ones override earlier ones) and overrides; instantiate without running.

    Returns:
        The CLI object: ``.model`` (MaskFormerModule), ``.datamodule`` and ``.trainer``.
    """
    torch.set_float32_matmul_precision("high")
    args = [f"--config={c}" for c in configs] + list(overrides)
    return HepattnCLI(
        MaskFormerModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        run=False,
        args=args,
    )


def load_weights(module: torch.nn.Module, checkpoint: str | Path) -> torch.nn.Module:
    """Load a Lightning checkpoint's weights into ``module`` (built from the same config); eval mode.

    The file is read with ``weights_only=True`` (see ``hepattn.training.checkpoint``), so it cannot run code.
    """
    from hepattn.training.checkpoint import CheckpointError, load_checkpoint

    loaded = load_checkpoint(checkpoint)
    if "state_dict" not in loaded:
        raise CheckpointError(f"{checkpoint}: no 'state_dict' in it: not a Lightning checkpoint")
    module.load_state_dict(loaded["state_dict"])
    return module.eval()
