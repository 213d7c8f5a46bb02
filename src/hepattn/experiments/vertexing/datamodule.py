"""The LightningDataModule over folders of simulated events with fitted tracks."""

from hepattn.data.datamodule import SplitDataModule
from hepattn.experiments.vertexing.dataset import VertexingDataset


class VertexingDataModule(SplitDataModule):
    """Train/val/test folders of events made by ``hepattn simulate --tracks``."""

    def __init__(
        self,
        train_dir: str | None = None,
        val_dir: str | None = None,
        test_dir: str | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        num_train: int | None = None,
        num_val: int | None = None,
        num_test: int | None = None,
        seed_weight_cap: float = 1.0,
    ):
        """Name the splits' folders.

        Args:
            train_dir: folder of training events (``eventNNNNNNNNN-{tracks,particles,...}.csv.gz``).
            val_dir: folder of validation events.
            test_dir: folder of test events (also used by ``predict``).
            batch_size: events per batch.
            num_workers: loader processes (0: load in the training process).
            num_train: use only the first this many training events (default: all).
            num_val: use only the first this many validation events (default: all).
            num_test: use only the first this many test events (default: all).
            seed_weight_cap: training seeds of small vertices drawn up to this many times more often
                (``dataset.event_inputs``); 1: uniform.
        """
        super().__init__(batch_size, num_workers)
        self.dirs = {"train": train_dir, "val": val_dir, "test": test_dir}
        self.limits = {"train": num_train, "val": num_val, "test": num_test}
        self.seed_weight_cap = seed_weight_cap
        self.datasets: dict[str, VertexingDataset] = {}

    def dataset(self, split: str) -> VertexingDataset:
        if split not in self.datasets:
            directory = self.dirs[split]
            if directory is None:
                raise ValueError(f"no {split}_dir given to {type(self).__name__}")
            cap = self.seed_weight_cap if split == "train" else 1.0
            self.datasets[split] = VertexingDataset(directory, self.limits[split], cap)
        return self.datasets[split]

    def event_sizes(self, split: str) -> list[int]:
        return [len(item["track_valid"]) for item in self.dataset(split).items]
