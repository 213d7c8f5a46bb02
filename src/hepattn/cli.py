"""The ``hepattn`` command line: one entry point, one subcommand per job."""

import argparse
import platform
import sys


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


TRAINING_COMMANDS = ("fit", "validate", "test", "predict")


def lightning_cli(argv: list[str]) -> int:
    """``hepattn fit|validate|test|predict --config CONFIG``: LightningCLI over ``MaskFormerModule``."""
    import torch
    from lightning.pytorch.cli import LightningCLI

    from hepattn.training.module import MaskFormerModule

    torch.set_float32_matmul_precision("high")
    LightningCLI(
        MaskFormerModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=argv,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hepattn",
        description="Particle-physics reconstruction as set prediction with one MaskFormer transformer.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("info", help="versions and available attention kernels").set_defaults(func=info)
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
