"""Per-constituent binary classification: hit filtering and query-seed scoring.

# B batch, N constituents, D dim.
"""

import torch
from torch import Tensor

from hepattn.models import losses
from hepattn.models.layers import Mlp
from hepattn.models.tasks.base import ConstituentTask, check_weights

LOSSES = {"bce": losses.bce_loss, "focal": losses.focal_loss}


class ConstituentClassificationTask(ConstituentTask):
    """Scores each constituent against the boolean label ``{input_name}_{target_field}``."""

    def __init__(
        self,
        name: str,
        dim: int,
        input_name: str = "hit",
        target_field: str = "on_target",
        losses: dict[str, float] | None = None,
        pos_weight: float | None = None,
        threshold: float = 0.5,
    ):
        """Build the head.

        Args:
            name: task name, used in outputs and loss names.
            dim: embedding size D.
            input_name: constituent name, e.g. "hit".
            target_field: label field; the label is ``batch[f"{input_name}_{target_field}"]``.
            losses: loss name ("bce", "focal") -> weight.
            pos_weight: weight of positive labels in the BCE (class imbalance).
            threshold: probability above which a constituent is predicted positive.
        """
        super().__init__()
        self.name = name
        self.input_name = input_name
        self.target_key = f"{input_name}_{target_field}"
        self.loss_weights = check_weights("losses", losses or {"bce": 1.0}, LOSSES, name)
        self.pos_weight = pos_weight
        self.threshold = threshold
        self.head = Mlp(dim, dim, 1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"logit": self.head(x).squeeze(-1)}

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logit, target = outputs["logit"], batch[self.target_key].float()
        valid = batch[f"{self.input_name}_valid"]
        kwargs = {"bce": {"pos_weight": self.pos_weight}, "focal": {}}
        return {n: w * LOSSES[n](logit, target, valid, **kwargs[n]) for n, w in self.loss_weights.items()}

    def predict(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        prob = torch.sigmoid(outputs["logit"].float())
        return {"prob": prob, "keep": prob >= self.threshold}
