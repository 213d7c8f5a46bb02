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
    """LightningCLI with the links that keep each value in one place."""

    def add_arguments_to_parser(self, parser) -> None:
        # the data decides which hit fields exist; the input network reads exactly those
        parser.link_arguments("data.init_args.hit_fields", "model.model.init_args.input_net.init_args.fields")


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
    """Load a Lightning checkpoint's weights into ``module`` (built from the same config); eval mode."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    module.load_state_dict(state)
    return module.eval()
