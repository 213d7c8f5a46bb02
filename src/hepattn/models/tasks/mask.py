"""Object-constituent assignment masks (which hits belong to which track).

# B batch, N constituents, Q queries, T targets, D dim, E mask-embedding dim.
"""

import math

import torch
from torch import Tensor, nn

from hepattn.models import losses
from hepattn.models.layers import Mlp
from hepattn.models.tasks.base import ObjectTask, check_weights

MASK_LOSSES = {"bce": losses.mask_bce_loss, "focal": losses.mask_focal_loss, "dice": losses.mask_dice_loss}
MASK_COSTS = {"bce": losses.mask_bce_cost, "focal": losses.mask_focal_cost, "dice": losses.mask_dice_cost}


class DotSimilarity(nn.Module):
    """Mask logit as a scaled dot product of query and constituent embeddings (MaskFormer)."""

    def forward(self, q: Tensor, x: Tensor) -> Tensor:
        return torch.einsum("bqe,bne->bqn", q, x) / math.sqrt(q.shape[-1])


class DistanceSimilarity(nn.Module):
    """Mask logit ``b - s * |q - x|^2 / E``: a locality prior, a hit belongs to a query near it.

    With a dot product a query says "hits in my direction"; with a distance it says "hits near me",
    which is what a track is in a smooth embedding. A CPU tracking prototype learned only with this
    head; on the circle toy of the tests the dot product learns faster.
    """

    def __init__(self):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.ones(()))

    def forward(self, q: Tensor, x: Tensor) -> Tensor:
        dist2 = (q.square().sum(-1, keepdim=True) + x.square().sum(-1).unsqueeze(1)
                 - 2 * torch.einsum("bqe,bne->bqn", q, x))  # fmt: skip
        return self.bias - self.log_scale.exp() * dist2.clamp_min(0) / q.shape[-1]


SIMILARITIES = {"dot": DotSimilarity, "distance": DistanceSimilarity}


class ObjectMaskTask(ObjectTask):
    """Predicts, for each query, which constituents belong to it; target ``{object}_{constituent}_valid``."""

    def __init__(
        self,
        name: str,
        dim: int,
        target_object: str = "particle",
        input_name: str = "hit",
        similarity: str = "dot",
        losses: dict[str, float] | None = None,
        costs: dict[str, float] | None = None,
        embed_dim: int | None = None,
    ):
        """Build the head.

        Args:
            name: task name.
            dim: embedding size D.
            target_object: target object name, e.g. "particle".
            input_name: constituent name, e.g. "hit".
            similarity: "dot" or "distance" (see the classes of that name).
            losses: loss name ("bce", "focal", "dice") -> weight.
            costs: cost name ("bce", "focal", "dice") -> weight in the matching.
            embed_dim: size E of the query and constituent mask embeddings (default D).
        """
        super().__init__()
        if similarity not in SIMILARITIES:
            raise ValueError(
                f"task '{name}': unknown similarity '{similarity}'; choose from {sorted(SIMILARITIES)}"
            )
        self.name = name
        self.target_object = target_object
        self.input_name = input_name
        self.target_key = f"{target_object}_{input_name}_valid"
        self.loss_weights = check_weights("losses", losses or {"bce": 1.0, "dice": 1.0}, MASK_LOSSES, name)
        self.cost_weights = check_weights("costs", costs or {"bce": 1.0, "dice": 1.0}, MASK_COSTS, name)
        embed_dim = embed_dim or dim
        self.query_embed = Mlp(dim, dim, embed_dim)
        self.input_embed = Mlp(dim, dim, embed_dim)
        self.similarity = SIMILARITIES[similarity]()

    def mask_logits(self, q: Tensor, x: Tensor) -> Tensor:
        """(B, Q, N) logits that a constituent belongs to a query; also drives mask attention."""
        return self.similarity(self.query_embed(q), self.input_embed(x))

    def forward(self, q: Tensor, x: Tensor) -> dict[str, Tensor]:
        return {"logit": self.mask_logits(q, x)}

    def cost(self, outputs, batch) -> Tensor | None:
        logit, target = outputs["logit"].float(), batch[self.target_key].float()
        valid = batch[f"{self.input_name}_valid"]
        return sum(w * MASK_COSTS[n](logit, target, valid) for n, w in self.cost_weights.items() if w)

    def loss(self, outputs, aligned, matched, batch) -> dict[str, Tensor]:
        logit, target = outputs["logit"].float(), aligned[self.target_key].float()
        valid = batch[f"{self.input_name}_valid"]
        return {n: w * MASK_LOSSES[n](logit, target, valid, matched) for n, w in self.loss_weights.items()}

    def predict(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"mask": outputs["logit"] > 0}
