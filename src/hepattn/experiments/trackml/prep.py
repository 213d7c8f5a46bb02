"""``hepattn prep``: cache prepared events as .npz so that training never parses CSV."""

from pathlib import Path

from tqdm import tqdm

from hepattn.data.trackml import available_parts, find_events, read_event
from hepattn.experiments.trackml.dataset import prepare_event, save_event


def event_parts(prefix: Path) -> list[str]:
    """What to read of one event: its hits, its cells when there, its particles and truth when there.

    A test event has hits (and cells) only; a training event has particles and truth as well. One of
    these two without the other is an incomplete event.

    Raises:
        FileNotFoundError: the hits, or one of particles and truth, are missing (the message names the
            file looked for).
    """
    parts = available_parts(prefix)
    for need, given in (("hits", None), ("truth", "particles"), ("particles", "truth")):
        if need not in parts and (given is None or given in parts):
            why = "" if given is None else f" (its {given} file is there)"
            tried = f"{prefix}-{need}.csv and {prefix}-{need}.csv.gz"
            raise FileNotFoundError(f"no {need} file for event {prefix}: tried {tried}{why}")
    return [p for p in ("hits", "cells", "particles", "truth") if p in parts]


def prepare_directory(
    in_dir: Path, out_dir: Path, volumes: list[int] | None = None, overwrite: bool = False
) -> list[Path]:
    """Prepare every event of ``in_dir`` into ``out_dir/eventNNNNNNNNN.npz``; skip finished ones.

    Events without particles and truth are prepared too (features only, for ``hepattn reconstruct``).

    Returns:
        The prepared files, including those that already existed.
    """
    prefixes = find_events(in_dir)
    if not prefixes:
        raise FileNotFoundError(f"no TrackML events (event*-hits.csv[.gz]) in {in_dir}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for prefix in tqdm(prefixes, desc="prep", unit="event"):
        path = out_dir / f"{prefix.name}.npz"
        if overwrite or not path.exists():
            save_event(path, prepare_event(read_event(prefix, event_parts(prefix)), volumes))
        written.append(path)
    return written
