"""``hepattn prep``: cache prepared events as .npz so that training never parses CSV."""

from pathlib import Path

from tqdm import tqdm

from hepattn.data.trackml import find_events, read_event
from hepattn.experiments.trackml.dataset import prepare_event, save_event


def prepare_directory(
    in_dir: Path, out_dir: Path, volumes: list[int] | None = None, overwrite: bool = False
) -> list[Path]:
    """Prepare every event of ``in_dir`` into ``out_dir/eventNNNNNNNNN.npz``; skip finished ones.

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
            parts = ["hits", "particles", "truth"]
            if any(prefix.parent.glob(f"{prefix.name}-cells.csv*")):
                parts.append("cells")
            save_event(path, prepare_event(read_event(prefix, parts), volumes))
        written.append(path)
    return written
