"""The LightningModule: runs the steps, logs the losses and the metrics the config names."""

import math

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from hepattn.metrics.objects import ObjectMatchingMetric
from hepattn.models.criterion import Criterion
from hepattn.models.maskformer import MaskFormer


class MaskFormerModule(L.LightningModule):
    """Train and evaluate a ``MaskFormer`` with a ``Criterion`` (e.g. ``SetCriterion``); both are injected."""

    def __init__(
        self,
        model: MaskFormer,
        criterion: Criterion,
        metrics: list[ObjectMatchingMetric] | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ):
        """Build the module.

        Args:
            model: the network.
            criterion: matching and losses.
            metrics: accumulated over each validation and test epoch and logged as ``{stage}/{name}``;
                each has ``update(preds, batch)``, ``compute()`` and ``reset()`` (``metrics.objects``).
            optimizer: the optimizer, given the parameters.
            lr_scheduler: stepped every optimizer step. A schedule whose length is a number of steps
                (``total_steps``, as OneCycleLR's) left unset runs for the fit's optimizer steps
                (``max_steps``, or ``max_epochs`` worth of steps).
        """
        super().__init__()
        self.save_hyperparameters(ignore=["model", "criterion", "metrics"])
        self.model = model
        self.criterion = criterion
        self.metrics = list(metrics or [])
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler

    def forward(self, batch: dict[str, torch.Tensor]) -> dict:
        return self.model(batch)

    def shared_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        outputs = self.model(batch)
        losses = self.criterion(outputs, batch, self.model.tasks)
        size = batch[f"{self.model.input_names[0]}_valid"].shape[0]
        sync = stage != "train"  # epoch-level val/test means: averaged over the processes under DDP
        self.log_dict({f"{stage}/{k}": v for k, v in losses.items()}, batch_size=size, sync_dist=sync)
        self.log(f"{stage}_loss", losses["loss"], batch_size=size, prog_bar=True, sync_dist=sync)
        if stage != "train":
            self.accumulate(outputs, batch)
        return losses["loss"]

    def accumulate(self, outputs: dict, batch: dict[str, torch.Tensor]) -> None:
        """Add this batch's predictions to every metric."""
        if self.metrics:
            preds = self.model.predict(outputs)
            for metric in self.metrics:
                metric.update(preds, batch)

    def log_rates(self, stage: str) -> None:
        for metric in self.metrics:
            rates = metric.compute()
            if rates:
                self.log_dict({f"{stage}/{k}": v for k, v in rates.items()}, sync_dist=True)
            metric.reset()

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
            "lr_scheduler": {"scheduler": self.make_scheduler(optimizer), "interval": "step"},
        }

    def make_scheduler(self, optimizer: torch.optim.Optimizer):
        """The configured schedule; one whose ``total_steps`` the config leaves unset runs the whole fit.

        Its length is the trainer's number of optimizer steps (``Trainer.estimated_stepping_batches``:
        ``max_steps``, or ``max_epochs`` times the steps per epoch when ``max_steps`` is -1), so
        ``--trainer.max_steps N`` alone sets both the run's and the schedule's length.
        """
        given = getattr(self.lr_scheduler, "keywords", {})
        if "total_steps" not in given or given["total_steps"] is not None or given.get("epochs") is not None:
            return self.lr_scheduler(optimizer)
        trainer = self._trainer
        steps = None if trainer is None else trainer.estimated_stepping_batches
        if steps is None or not math.isfinite(steps) or steps < 1:
            raise ValueError(
                "the learning-rate schedule needs its length: set trainer.max_steps or trainer.max_epochs "
                "(or the schedule's total_steps)"
            )
        steps = int(steps)
        return self.lr_scheduler(optimizer, total_steps=steps)
