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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hepattn",
        description="Particle-physics reconstruction as set prediction with one MaskFormer transformer.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("info", help="versions and available attention kernels").set_defaults(func=info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
