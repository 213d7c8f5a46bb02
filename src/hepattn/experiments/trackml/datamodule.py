"""The LightningDataModule over prepared TrackML events (``hepattn prep`` output folders)."""

from pathlib import Path

from hepattn.data.datamodule import SplitDataModule
from hepattn.experiments.trackml.dataset import TargetCuts, TrackMLDataset


class TrackMLDataModule(SplitDataModule):
    """Train/val/test splits of prepared events (``hepattn prep`` output folders).

    Every event carries all the hit features it has (``dataset.KNOWN_FEATURES``); the input network's
    ``fields`` in the config say which ones the model reads.
    With ``all_particles`` every particle with a hit is an object (``particle_target`` flags those passing
    the pT, eta and hit cuts), so masks can be learned for all of them while validity and efficiency
    concern the targets; by default the objects are the targets only.
    """

    def __init__(
        self,
        train_dir: str | None = None,
        val_dir: str | None = None,
        test_dir: str | None = None,
        min_pt: float = 1.0,
        max_eta: float = 4.0,
        min_hits: int = 3,
        batch_size: int = 1,
        num_workers: int = 0,
        num_train: int | None = None,
        num_val: int | None = None,
        num_test: int | None = None,
        all_particles: bool = False,
        seed_weight_cap: float | None = None,
        cell_dropout: float = 0.0,
    ):
        """Name the splits' folders and the target cuts.

        Args:
            train_dir: folder of prepared training events (``eventNNNNNNNNN.npz``).
            val_dir: folder of prepared validation events.
            test_dir: folder of prepared test events (also used by ``predict``).
            min_pt: targets have a transverse momentum above this (GeV).
            max_eta: targets have |eta| below this.
            min_hits: targets leave at least this many hits in the kept volumes.
            batch_size: events per batch.
            num_workers: loader processes (0: load in the training process).
            num_train: use only the first this many training events (default: all).
            num_val: use only the first this many validation events (default: all).
            num_test: use only the first this many test events (default: all).
            all_particles: every particle with a hit is an object, the targets flagged (see above).
            seed_weight_cap: give each hit ``hit_seed_weight``, its target's pT over ``min_pt`` clipped to
                [1, this] (1 off targets), for ``SampledQueries(weight_field=...)``; None: no weights.
            cell_dropout: in the training split, give each event with this probability as if it had no
                cells file (cell features 0, ``hit_has_cells`` 0), so that a model reading ``has_cells``
                learns to work without them too.
        """
        super().__init__(batch_size, num_workers)
        self.all_particles = all_particles
        self.seed_weight_cap = seed_weight_cap
        self.cell_dropout = cell_dropout
        self.dirs = {"train": train_dir, "val": val_dir, "test": test_dir}
        self.limits = {"train": num_train, "val": num_val, "test": num_test}
        self.cuts = TargetCuts(min_pt=min_pt, max_eta=max_eta, min_hits=min_hits)
        self.datasets: dict[str, TrackMLDataset] = {}

    def dataset(self, split: str) -> TrackMLDataset:
        if split not in self.datasets:
            directory = self.dirs[split]
            if directory is None:
                raise ValueError(f"no {split}_dir given to {type(self).__name__}")
            self.datasets[split] = TrackMLDataset(
                Path(directory),
                cuts=self.cuts,
                limit=self.limits[split],
                all_particles=self.all_particles,
                seed_weight_cap=self.seed_weight_cap,
                cell_dropout=self.cell_dropout if split == "train" else 0.0,
            )
        return self.datasets[split]

    def event_sizes(self, split: str) -> list[int]:
        return self.dataset(split).num_hits()
