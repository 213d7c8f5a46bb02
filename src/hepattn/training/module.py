"""The LightningModule: runs the steps, logs the losses and the tracking metrics."""

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from hepattn.metrics.reco import track_counts, track_rates
from hepattn.models.criterion import Criterion
from hepattn.models.maskformer import MaskFormer
from hepattn.models.tasks.classify import ObjectValidTask
from hepattn.models.tasks.mask import ObjectMaskTask


class MaskFormerModule(L.LightningModule):
    """Train and evaluate a ``MaskFormer`` with a ``Criterion`` (e.g. ``SetCriterion``); both are injected."""

    def __init__(
        self,
        model: MaskFormer,
        criterion: Criterion,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["model", "criterion"])
        self.model = model
        self.criterion = criterion
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.counts: dict[str, int] = {}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict:
        return self.model(batch)

    def shared_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        outputs = self.model(batch)
        losses = self.criterion(outputs, batch, self.model.tasks)
        size = batch[f"{self.model.input_name}_valid"].shape[0]
        sync = stage != "train"  # epoch-level val/test means: averaged over the processes under DDP
        self.log_dict({f"{stage}/{k}": v for k, v in losses.items()}, batch_size=size, sync_dist=sync)
        self.log(f"{stage}_loss", losses["loss"], batch_size=size, prog_bar=True, sync_dist=sync)
        if stage != "train":
            self.accumulate(outputs, batch)
        return losses["loss"]

    def accumulate(self, outputs: dict, batch: dict[str, torch.Tensor]) -> None:
        """Add this batch's track counts (for models with a validity and a mask task)."""
        tasks = self.model.object_tasks
        valid = next((t for t in tasks if isinstance(t, ObjectValidTask)), None)
        mask = next((t for t in tasks if isinstance(t, ObjectMaskTask)), None)
        if valid is None or mask is None:
            return
        preds = self.model.predict(outputs)
        obj, hit = mask.target_object, mask.input_name
        counts = track_counts(
            preds[valid.name]["valid"] & preds["queries"]["valid"],
            preds[mask.name]["mask"],
            batch[f"{obj}_valid"],
            batch[f"{obj}_{hit}_valid"],
            batch[f"{hit}_valid"],
            batch.get(f"{obj}_target"),  # with all particles as objects, efficiency counts the targets
        )
        for k, v in counts.items():
            self.counts[k] = self.counts.get(k, 0) + v

    def log_rates(self, stage: str) -> None:
        if self.counts:
            self.log_dict({f"{stage}/{k}": v for k, v in track_rates(self.counts).items()}, sync_dist=True)
        self.counts = {}

    def training_step(self, batch, batch_idx):
        return self.shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self.shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self.shared_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self.log_rates("val")

    def on_test_epoch_end(self) -> None:
        self.log_rates("test")

    def predict_step(self, batch, batch_idx):
        return self.model.predict(self.model(batch, aux_heads=False))

    def configure_optimizers(self):
        optimizer = self.optimizer(self.parameters())
        if self.lr_scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.lr_scheduler(optimizer), "interval": "step"},
        }
