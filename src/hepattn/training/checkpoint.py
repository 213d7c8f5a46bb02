"""Read our Lightning checkpoints without letting the file run code.

A full unpickle (``torch.load(weights_only=False)``) calls whatever the file names, so a checkpoint
from elsewhere can run any command on load. ``weights_only=True`` rebuilds only tensors, containers and
plain values, plus the classes allow-listed in ``SAFE_GLOBALS``.
"""

import os
import pickle
from pathlib import Path

import torch

# Our checkpoints hold weights, optimizer and schedule states, loop counters, the ModelCheckpoint state
# and the hyper-parameters as plain dicts: torch's own weights-only list already covers all of it
# (checked on toy fits in fp32 and bf16, with EarlyStopping, LearningRateMonitor and step checkpoints).
# Add a class here only if it is plain data; never a function, and never a class whose
# construction or __setstate__ runs code of the file's choosing.
SAFE_GLOBALS: list[type] = []


class CheckpointError(ValueError):
    """Not a checkpoint we can load safely: an unreadable file, or one holding objects that could run code."""


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint on the CPU with ``weights_only=True``.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        CheckpointError: the file is not a torch checkpoint dict, or it names a global that is neither
            in torch's weights-only list nor in ``SAFE_GLOBALS`` (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: refusing to load it: {refusal(err)}") from err
    except (RuntimeError, OSError, EOFError, KeyError) as err:
        # what torch.load raises for a truncated, empty or non-torch file
        problem = f"not a readable torch checkpoint ({type(err).__name__}: {err})"
        raise CheckpointError(f"{path}: {problem}") from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: holds a {type(checkpoint).__name__}, not a checkpoint dict")
    return checkpoint


def refusal(err: pickle.UnpicklingError) -> str:
    """Why ``weights_only`` loading refused a file, in one line (names the global or opcode refused)."""
    # torch wraps the unpickler's own one-line reason in a long paragraph of advice
    reason = (str(err.__context__ or err).strip().splitlines() or [""])[0]
    return f"it holds more than tensors and plain values (weights_only): {reason}"
