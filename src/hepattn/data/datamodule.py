"""The LightningDataModule base every experiment's data module derives from: loaders over named splits."""

import os

import lightning as L
from torch.utils.data import DataLoader, Dataset, Sampler

from hepattn.data.batch import collate
from hepattn.data.sampler import SizeBalancedSampler


class SplitDataModule(L.LightningDataModule):
    """Loaders over the train/val/test datasets a subclass provides (predict uses test)."""

    def __init__(self, batch_size: int, num_workers: int = 0):
        """Build the loaders' settings.

        Args:
            batch_size: events per batch.
            num_workers: loader processes (0: load in the training process).
        """
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers

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
