"""Object-constituent assignment masks (which hits belong to which track).

# B batch, N constituents, Q queries, T targets, D dim, E mask-embedding dim.
"""

import math

import torch
import torch.nn.functional as F
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
    """Mask logit ``b - s * |q/|q| - x/|x||^2``: a locality prior, a hit belongs to a query near it.

    With a dot product a query says "hits in my direction"; with a distance it says "hits near me",
    which is what a track is in a smooth embedding. The embeddings are normalised so that the squared
    distance lies in [0, 4] whatever their scale, and the sharpness s starts at ``init_scale``: on events
    with thousands of hits the raw embeddings of a fresh model all lie close together, and a scale that
    must first grow by orders of magnitude loses the race against the bias, which the mask loss drives
    down until every mask is empty.
    """

    def __init__(self, init_scale: float = 10.0, init_bias: float = 1.0):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.bias = nn.Parameter(torch.tensor(init_bias))

    def forward(self, q: Tensor, x: Tensor) -> Tensor:
        q, x = F.normalize(q, dim=-1), F.normalize(x, dim=-1)
        scale = self.log_scale.exp()
        # |q - x|^2 = 2 - 2 q.x for unit vectors, so b - s |q - x|^2 = (b - 2s) + 2s q.x: one fused
        # matrix product over the (B, Q, N) logits (rounding may lift a logit above b by ~1e-6 s)
        return torch.baddbmm((self.bias - 2 * scale).view(1, 1, 1), (2 * scale) * q, x.transpose(1, 2))


SIMILARITIES = {"dot": DotSimilarity, "distance": DistanceSimilarity}


def mask_iou(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """(B, Q) intersection over union of bool (B, Q, N) predicted and target masks (0 when both empty)."""
    if valid is not None:
        pred, target = pred & valid[:, None], target & valid[:, None]
    inter = (pred & target).sum(-1).float()
    union = (pred | target).sum(-1).float()
    return inter / union.clamp_min(1.0)


class ObjectMaskTask(ObjectTask):
    """Predicts, for each query, which constituents belong to it; target ``{object}_{constituent}_valid``."""

    constituent_outputs = ("logit",)

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
        shared_embed: bool = False,
        quality_weight: float = 0.0,
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
            shared_embed: one MLP embeds queries and constituents, so that a query initialised from a
                constituent (dynamic queries) starts at that constituent in the mask space.
            quality_weight: weight of a head that predicts how good each query's own mask is, the IoU of
                its predicted mask (logit > 0) with its target's (0 for an unmatched query), trained with
                BCE on that soft target (mask scoring, arXiv 1903.00241). When one-to-many assignment
                (``SeedOwnerCriterion``) gives every seed of a particle the same validity target, this is
                what tells a clean mask from one that merged two particles; 0: no head.
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
        self.input_embed = Mlp(dim, dim, embed_dim)
        self.query_embed = self.input_embed if shared_embed else Mlp(dim, dim, embed_dim)
        self.similarity = SIMILARITIES[similarity]()
        self.quality_weight = quality_weight
        self.quality_head = Mlp(dim, dim, 1) if quality_weight else None

    def embed_inputs(self, x: Tensor) -> Tensor:
        """(B, N, E) constituent embeddings in the mask space; the same for every decoder layer."""
        return self.input_embed(x)

    def logits_from(self, q: Tensor, x_embed: Tensor) -> Tensor:
        """(B, Q, N) mask logits of queries q over constituents already embedded by ``embed_inputs``."""
        return self.similarity(self.query_embed(q), x_embed)

    def mask_logits(self, q: Tensor, x: Tensor) -> Tensor:
        """(B, Q, N) logits that a constituent belongs to a query; also drives mask attention."""
        return self.logits_from(q, self.embed_inputs(x))

    def forward(self, q: Tensor, x: Tensor) -> dict[str, Tensor]:
        return self.outputs(q, self.mask_logits(q, x))

    def outputs(self, q: Tensor, logit: Tensor) -> dict[str, Tensor]:
        """The task's outputs for queries q whose mask logits (B, Q, N) are already computed."""
        out = {"logit": logit}
        if self.quality_head is not None:
            out["quality_logit"] = self.quality_head(q).squeeze(-1)
        return out

    def cost(self, outputs, batch) -> Tensor | None:
        logit, target = outputs["logit"].float(), batch[self.target_key].float()
        valid = batch[f"{self.input_name}_valid"]
        return sum(w * MASK_COSTS[n](logit, target, valid) for n, w in self.cost_weights.items() if w)

    def loss(self, outputs, aligned, matched, batch) -> dict[str, Tensor]:
        # as they are (e.g. bf16 logits, bool targets): the losses widen them and keep them for backward
        logit, target = outputs["logit"], aligned[self.target_key]
        valid = batch[f"{self.input_name}_valid"]
        out = {n: w * MASK_LOSSES[n](logit, target, valid, matched) for n, w in self.loss_weights.items()}
        if self.quality_head is not None:
            out["quality"] = self.quality_weight * self.quality_loss(outputs, target, valid, matched, aligned)
        return out

    def quality_loss(
        self,
        outputs: dict[str, Tensor],
        target: Tensor,
        valid: Tensor,
        matched: Tensor,
        aligned: dict[str, Tensor],
    ) -> Tensor:
        """BCE of the quality head against the IoU of each query's own (detached) mask with its target.

        Unlike the mask losses (a mean over matched queries), a mean over every valid query: a query with
        no target must learn that its mask is worth nothing.
        """
        with torch.no_grad():
            iou = torch.where(matched, mask_iou(outputs["logit"] > 0, target.bool(), valid), 0.0)
        loss = F.binary_cross_entropy_with_logits(outputs["quality_logit"].float(), iou, reduction="none")
        query_valid = aligned.get("query_valid", torch.ones_like(matched))
        return torch.where(query_valid, loss, 0.0).sum() / query_valid.sum().clamp_min(1)

    def predict(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {"logit": outputs["logit"], "mask": outputs["logit"] > 0}
        if "quality_logit" in outputs:
            out["quality"] = torch.sigmoid(outputs["quality_logit"].float())
        return out
