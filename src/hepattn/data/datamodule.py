"""LightningDataModules: a shared base over named splits, and the one over prepared TrackML events."""

import os
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader, Dataset, Sampler

from hepattn.data.batch import collate
from hepattn.data.dataset import TargetCuts, TrackMLDataset
from hepattn.data.sampler import SizeBalancedSampler


class SplitDataModule(L.LightningDataModule):
    """Loaders over the train/val/test datasets a subclass provides (predict uses test)."""

    def __init__(self, hit_fields: tuple[str, ...], batch_size: int, num_workers: int = 0):
        super().__init__()
        self.hit_fields = list(hit_fields)
        self.batch_size = batch_size
        self.num_workers = num_workers

    @property
    def input_fields(self) -> list[str]:
        """The hit fields the model reads (linked to the input network by the CLI)."""
        return self.hit_fields

    def dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def event_sizes(self, split: str) -> list[int] | None:
        """Cost of each event of a split (e.g. its number of hits), if the subclass knows it."""
        return None

    def loader(self, split: str, shuffle: bool = False, sampler: Sampler | None = None) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled events.

        Under DDP, when the sizes are known, the processes of a step get events of similar size (a step
        waits for its slowest process: see ``SizeBalancedSampler``).
        """
        trainer = self.trainer
        sizes = self.event_sizes("train") if trainer is not None and trainer.world_size > 1 else None
        if sizes is None:
            return self.loader("train", shuffle=True)
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # set by seed_everything, as Lightning's own sampler
        dataset = self.dataset("train")
        return self.loader(
            "train",
            sampler=SizeBalancedSampler(dataset, sizes, trainer.world_size, trainer.global_rank, seed),
        )

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.loader("test")


class TrackMLDataModule(SplitDataModule):
    """Train/val/test splits of prepared events (``hepattn prep`` output folders).

    The model sizes that the data decides are exposed as properties so that the CLI can link them
    (``input_fields`` for the input network), instead of writing them twice in a config.
    With ``all_particles`` every particle with a hit is an object (``particle_target`` flags those passing
    the pT, eta and hit cuts), so masks can be learned for all of them while validity and efficiency
    concern the targets; by default the objects are the targets only.
    """

    def __init__(
        self,
        train_dir: str | None = None,
        val_dir: str | None = None,
        test_dir: str | None = None,
        hit_fields: tuple[str, ...] = ("x", "y", "z", "r", "eta", "phi", "u", "v"),
        min_pt: float = 1.0,
        max_eta: float = 4.0,
        min_hits: int = 3,
        batch_size: int = 1,
        num_workers: int = 0,
        num_train: int | None = None,
        num_val: int | None = None,
        num_test: int | None = None,
        all_particles: bool = False,
    ):
        super().__init__(hit_fields, batch_size, num_workers)
        self.all_particles = all_particles
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
                Path(directory), self.hit_fields, self.cuts, self.limits[split], self.all_particles
            )
        return self.datasets[split]

    def event_sizes(self, split: str) -> list[int]:
        return self.dataset(split).num_hits()
