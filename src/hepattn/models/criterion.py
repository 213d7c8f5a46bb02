"""Criteria: assign queries to targets (by matched task costs, or by seed), then take the task losses.

# B batch, N constituents, Q queries, T targets.
"""

import torch
from torch import Tensor, nn

from hepattn.models.matcher import HungarianMatcher
from hepattn.models.tasks.base import ConstituentTask, ObjectTask


def align_targets(batch: dict[str, Tensor], target_object: str, query_to_target: Tensor) -> dict[str, Tensor]:
    """Gather every ``{target_object}_*`` field (B, T, ...) to query order (B, Q, ...); unmatched -> 0."""
    matched = query_to_target >= 0
    index = query_to_target.clamp_min(0)
    aligned = {}
    for key, value in batch.items():
        if not key.startswith(f"{target_object}_"):
            continue
        idx = index.view(*index.shape, *([1] * (value.dim() - 2))).expand(-1, -1, *value.shape[2:])
        keep = matched.view(*matched.shape, *([1] * (value.dim() - 2)))
        aligned[key] = torch.where(keep, value.gather(1, idx), torch.zeros((), dtype=value.dtype))
    return aligned


class Criterion(nn.Module):
    """For each decoder layer: assign queries to targets (``match``), then take the object tasks' losses.

    The final layer and the auxiliary (intermediate) layers go through the same code. Loss names are
    ``{layer}/{task}/{loss}``; ``"loss"`` is their sum. Subclasses decide the assignment.
    """

    def __init__(self, target_object: str = "particle", aux_loss: bool = True):
        """Build the criterion.

        Args:
            target_object: the objects queries are matched to; ``{target_object}_valid`` marks real ones.
            aux_loss: also supervise the intermediate decoder layers (else only the last).
        """
        super().__init__()
        self.target_object = target_object
        self.aux_loss = aux_loss

    def match(
        self, layer_outputs: list[dict], tasks: list[ObjectTask], batch: dict, queries: dict[str, Tensor]
    ) -> list[Tensor]:
        """For each layer's outputs, the (B, Q) index of the target assigned to each query (-1: none)."""
        raise NotImplementedError

    def forward(self, outputs: dict, batch: dict[str, Tensor], tasks: list[nn.Module]) -> dict[str, Tensor]:
        """Losses of a model's outputs (see ``MaskFormer.forward``) against the targets in ``batch``."""
        losses = {}
        for task in tasks:
            if isinstance(task, ConstituentTask):
                for name, value in task.loss(outputs["encoder"][task.name], batch).items():
                    losses[f"encoder/{task.name}/{name}"] = value
        object_tasks = [t for t in tasks if isinstance(t, ObjectTask)]
        layers = sorted((k for k in outputs if k.startswith("layer_")), key=lambda k: int(k.split("_")[1]))
        layers = layers if self.aux_loss else layers[-1:]
        assignments = []
        if layers:  # a model without a decoder (the hit filter) has constituent tasks only
            assignments = self.match([outputs[k] for k in layers], object_tasks, batch, outputs["queries"])
        for layer, query_to_target in zip(layers, assignments, strict=True):
            aligned = align_targets(batch, self.target_object, query_to_target)
            aligned["query_valid"] = outputs["queries"]["valid"]
            matched = query_to_target >= 0
            for task in object_tasks:
                for name, value in task.loss(outputs[layer][task.name], aligned, matched, batch).items():
                    losses[f"{layer}/{task.name}/{name}"] = value
        losses["loss"] = torch.stack(list(losses.values())).sum()
        return losses


def seed_owners(seed_index: Tensor, owner: Tensor) -> Tensor:
    """(B, T, Q) True where target t owns the seed constituent of query q.

    Args:
        seed_index: (B, Q) the constituent each query was seeded on.
        owner: (B, T, N) constituents of each target (``{target}_{constituent}_valid``).
    """
    return owner.gather(2, seed_index.unsqueeze(1).expand(-1, owner.shape[1], -1))


class SetCriterion(Criterion):
    """Set prediction loss: queries are matched to targets by the summed task costs (DETR).

    With ``seed_cost``, a seeded query (dynamic queries) is cheaper to match to its seed's owner.
    """

    def __init__(
        self,
        matcher: HungarianMatcher,
        target_object: str = "particle",
        aux_loss: bool = True,
        seed_cost: float = 0.0,
        input_name: str = "hit",
    ):
        """Build the criterion.

        Args:
            matcher: turns the summed cost into an assignment.
            target_object: the objects queries are matched to; ``{target_object}_valid`` marks real ones.
            aux_loss: also supervise the intermediate decoder layers (else only the last).
            seed_cost: for queries seeded on constituents (dynamic queries), the cost bonus for matching a
                query to the target that owns its seed; 0 matches on the task costs alone.
            input_name: the constituents, for ``{target_object}_{input_name}_valid`` (the seed owner).
        """
        super().__init__(target_object, aux_loss)
        self.matcher = matcher
        self.seed_cost = seed_cost
        self.owner_key = f"{target_object}_{input_name}_valid"

    def seed_owner_cost(self, seed_index: Tensor, batch: dict) -> Tensor:
        """(B, Q, T) minus ``seed_cost`` where target t owns the seed constituent of query q, else 0.

        Without it, the masks of a fresh model say nothing, the matching is arbitrary, and on events with
        thousands of constituents the mask heads settle on empty masks (the optimum for random targets).
        Matching a seeded query to its seed's owner gives every query a consistent target from the start.
        """
        return -self.seed_cost * seed_owners(seed_index, batch[self.owner_key]).transpose(1, 2).float()

    @torch.no_grad()
    def cost(self, layer_outputs: dict, tasks: list[ObjectTask], batch: dict) -> Tensor:
        """(B, Q, T) summed task cost of one layer, in float32 even under autocast.

        In bf16 the mask costs (sums over the N hits) would round to 8 significant bits, tying many pairs
        and coarsening the optimum.
        """
        with torch.autocast(batch[f"{self.target_object}_valid"].device.type, enabled=False):
            costs = [c for t in tasks if (c := t.cost(layer_outputs[t.name], batch)) is not None]
            if not costs:
                raise ValueError("no object task provides a matching cost")
            return torch.stack(costs).float().sum(0)

    def match(
        self, layer_outputs: list[dict], tasks: list[ObjectTask], batch: dict, queries: dict[str, Tensor]
    ) -> list[Tensor]:
        """Each layer's (B, Q) index of the target matched to each query (-1: none).

        The layers' costs go to the matcher as one (L B, Q, T) batch: one wait for the device per training
        step, and the solver works on the layers side by side. The seed bonus, the same for every layer,
        is computed once.
        """
        cost = torch.stack([self.cost(outputs, tasks, batch) for outputs in layer_outputs])  # (L, B, Q, T)
        if self.seed_cost and queries.get("index") is not None:
            cost = cost + self.seed_owner_cost(queries["index"], batch)
        L = len(layer_outputs)
        target_valid = batch[f"{self.target_object}_valid"].repeat(L, 1)
        query_valid = None if queries["valid"] is None else queries["valid"].repeat(L, 1)
        return list(self.matcher(cost.flatten(0, 1), query_valid, target_valid).chunk(L))


class SeedOwnerCriterion(Criterion):
    """Each query is assigned to the target that owns its seed constituent; queries on other seeds to none.

    For queries seeded on constituents (``SampledQueries``): at inference every constituent seeds a query
    and duplicates are removed afterwards, so in training every seed of a target learns that target's mask
    and validity (one-to-many assignment, as in H-DETR arXiv 2207.13080, taken to its limit; the label
    follows the seed's position as in anchor assignment). No cost is computed: the assignment does not
    depend on the predictions, which also spares the (Q, T, N) mask costs of matching.
    """

    def __init__(self, target_object: str = "particle", aux_loss: bool = True, input_name: str = "hit"):
        """Build the criterion.

        Args:
            target_object: the objects queries are assigned to; ``{target_object}_valid`` marks real ones.
            aux_loss: also supervise the intermediate decoder layers (else only the last).
            input_name: the constituents, for ``{target_object}_{input_name}_valid`` (the seed owner).
        """
        super().__init__(target_object, aux_loss)
        self.owner_key = f"{target_object}_{input_name}_valid"

    @torch.no_grad()
    def match(
        self, layer_outputs: list[dict], tasks: list[ObjectTask], batch: dict, queries: dict[str, Tensor]
    ) -> list[Tensor]:
        """The (B, Q) index of the valid target that owns each query's seed (-1: none, or invalid query).

        The same for every layer: it does not depend on the predictions.
        """
        if queries.get("index") is None:
            raise ValueError(f"{type(self).__name__} needs seeded queries (queries['index'])")
        owns = seed_owners(queries["index"], batch[self.owner_key])
        owns &= batch[f"{self.target_object}_valid"].unsqueeze(-1)
        if owns.shape[1] == 0:
            return [torch.full_like(queries["index"], -1)] * len(layer_outputs)
        owned = owns.any(1) & queries["valid"]
        return [torch.where(owned, owns.byte().argmax(1), -1)] * len(layer_outputs)
