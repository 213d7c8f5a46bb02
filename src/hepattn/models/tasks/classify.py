"""Per-query classification: object validity and multi-class object labels.

# B batch, Q queries, T targets, C classes, D dim.
"""

import torch
from torch import Tensor
from torch.nn import functional as F

from hepattn.models import losses
from hepattn.models.layers import Mlp
from hepattn.models.tasks.base import ObjectTask, check_weights


class ObjectValidTask(ObjectTask):
    """Whether a query is a real object: the target is 'matched to a target object' (and flagged)."""

    def __init__(
        self,
        name: str,
        dim: int,
        target_object: str = "particle",
        losses: dict[str, float] | None = None,
        cost_weight: float = 1.0,
        null_weight: float = 1.0,
        threshold: float = 0.5,
        target_flag: str | None = None,
    ):
        """Build the head.

        Args:
            name: task name.
            dim: embedding size D.
            target_object: name of the target objects, e.g. "particle".
            losses: {"bce": weight}.
            cost_weight: weight of the matching cost -log p(valid) (0 to leave it out of matching).
            null_weight: relative weight of unmatched queries in the loss (DETR's eos_coef).
            threshold: probability above which a query is predicted to be an object.
            target_flag: boolean object field (``{target_object}_{target_flag}``, e.g. "target") that
                marks the objects a query should call real; a query matched to an unflagged object is
                trained like an unmatched one (its mask is still learned). None: every matched object.
        """
        super().__init__()
        self.name = name
        self.target_object = target_object
        self.loss_weights = check_weights("losses", losses or {"bce": 1.0}, {"bce": None}, name)
        self.cost_weight = cost_weight
        self.null_weight = null_weight
        self.threshold = threshold
        self.flag_key = None if target_flag is None else f"{target_object}_{target_flag}"
        self.head = Mlp(dim, dim, 1)

    def forward(self, q: Tensor, x: Tensor) -> dict[str, Tensor]:
        return {"logit": self.head(q).squeeze(-1)}

    def cost(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor | None:
        if not self.cost_weight:
            return None
        logit = outputs["logit"].float().unsqueeze(-1)
        num_targets = batch[f"{self.target_object}_valid"].shape[1]
        cost = F.softplus(-logit).expand(-1, -1, num_targets)  # -log p: the BCE of calling the query real
        if self.flag_key is not None:  # a query matched to an unflagged object should be called not real
            cost = torch.where(batch[self.flag_key].unsqueeze(1), cost, F.softplus(logit))
        return self.cost_weight * cost

    def loss(self, outputs, aligned, matched: Tensor, batch) -> dict[str, Tensor]:
        logit = outputs["logit"].float()
        real = matched if self.flag_key is None else matched & aligned[self.flag_key]
        weight = torch.where(real, 1.0, self.null_weight)
        q_valid = aligned["query_valid"]
        loss = F.binary_cross_entropy_with_logits(logit, real.float(), weight=weight, reduction="none")
        loss = (loss * q_valid).sum() / (weight * q_valid).sum().clamp_min(1.0)
        return {"bce": self.loss_weights["bce"] * loss}

    def predict(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        prob = torch.sigmoid(outputs["logit"].float())
        return {"prob": prob, "valid": prob >= self.threshold}


class ObjectClassificationTask(ObjectTask):
    """Multi-class label of each object, from the integer field ``{target_object}_{field}``."""

    def __init__(
        self,
        name: str,
        dim: int,
        num_classes: int,
        target_object: str = "particle",
        field: str = "class",
        class_weights: list[float] | None = None,
        loss_weight: float = 1.0,
        cost_weight: float = 1.0,
    ):
        """Build the head.

        Args:
            name: the task's name: its outputs, losses and logged metrics go under it.
            dim: width of the query embeddings.
            num_classes: number of classes; the labels are 0 .. num_classes - 1.
            target_object: the objects whose field is learned (``particle``: ``particle_{field}``).
            field: the integer field holding each object's class.
            class_weights: the cross-entropy weight of each class (default: all 1).
            loss_weight: weight of the cross-entropy in the total loss.
            cost_weight: weight of the class cost in the matching (0: the matcher ignores the class).
        """
        super().__init__()
        self.name = name
        self.target_object = target_object
        self.key = f"{target_object}_{field}"
        self.loss_weight = loss_weight
        self.cost_weight = cost_weight
        weights = torch.ones(num_classes) if class_weights is None else torch.tensor(class_weights)
        if weights.shape != (num_classes,):
            raise ValueError(
                f"task '{name}': class_weights has {len(weights)} entries for {num_classes} classes"
            )
        self.register_buffer("class_weights", weights.float(), persistent=False)
        self.head = Mlp(dim, dim, num_classes)

    def forward(self, q: Tensor, x: Tensor) -> dict[str, Tensor]:
        return {"logits": self.head(q)}

    def cost(self, outputs, batch) -> Tensor | None:
        if not self.cost_weight:
            return None
        return self.cost_weight * losses.cross_entropy_cost(outputs["logits"], batch[self.key])

    def loss(self, outputs, aligned, matched, batch) -> dict[str, Tensor]:
        logits = outputs["logits"].float()[matched]
        labels = aligned[self.key].long()[matched]
        return {"ce": self.loss_weight * losses.cross_entropy_loss(logits, labels, self.class_weights)}

    def predict(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        prob = outputs["logits"].float().softmax(-1)
        return {"prob": prob, "label": prob.argmax(-1)}
