"""Per-query regression of object properties (e.g. track pT, eta, phi, vertex z).

# B batch, Q queries, T targets, F regressed fields, D dim.
"""

import torch
from torch import Tensor

from hepattn.models import losses
from hepattn.models.layers import Mlp
from hepattn.models.tasks.base import ObjectTask


class ObjectRegressionTask(ObjectTask):
    """Regresses ``{target_object}_{field}`` for each field, in a normalised space.

    The head predicts ``(f(value) - offset) / scale`` with f = log for the fields in ``log_fields``
    (e.g. pT, whose spectrum spans decades); ``predict`` maps back to physical units.
    """

    def __init__(
        self,
        name: str,
        dim: int,
        fields: list[str],
        target_object: str = "particle",
        offsets: list[float] | None = None,
        scales: list[float] | None = None,
        log_fields: list[str] | None = None,
        loss_weight: float = 1.0,
        cost_weight: float = 0.0,
    ):
        """Build the head.

        Args:
            name: the task's name: its outputs, losses and logged metrics go under it.
            dim: width of the query embeddings.
            fields: the object fields to regress (``{target_object}_{field}`` in the batch).
            target_object: the objects whose fields are learned.
            offsets: per field, subtracted after the log (default 0).
            scales: per field, divided by after the offset (default 1).
            log_fields: fields learned as their logarithm (e.g. ``pt``).
            loss_weight: weight of the L1 loss (in the normalised space) in the total loss.
            cost_weight: weight of the L1 cost in the matching (0: the matcher ignores it).
        """
        super().__init__()
        self.name = name
        self.target_object = target_object
        self.fields = list(fields)
        self.keys = [f"{target_object}_{f}" for f in self.fields]
        n = len(self.fields)
        for label, values in (("offsets", offsets), ("scales", scales)):
            if values is not None and len(values) != n:
                raise ValueError(f"task '{name}': {label} has {len(values)} entries for {n} fields")
        unknown = set(log_fields or []) - set(self.fields)
        if unknown:
            raise ValueError(
                f"task '{name}': log_fields {sorted(unknown)} are not among fields {self.fields}"
            )
        self.register_buffer("offsets", torch.tensor(offsets or [0.0] * n), persistent=False)
        self.register_buffer("scales", torch.tensor(scales or [1.0] * n), persistent=False)
        self.register_buffer(
            "is_log", torch.tensor([f in (log_fields or []) for f in self.fields]), persistent=False
        )
        self.loss_weight = loss_weight
        self.cost_weight = cost_weight
        self.head = Mlp(dim, dim, n)

    def normalise(self, values: Tensor) -> Tensor:
        """(..., F) physical values to the normalised space the head predicts."""
        values = torch.where(self.is_log, values.clamp_min(1e-12).log(), values)
        return (values - self.offsets) / self.scales

    def denormalise(self, values: Tensor) -> Tensor:
        values = values * self.scales + self.offsets
        return torch.where(self.is_log, values.exp(), values)

    def targets(self, fields: dict[str, Tensor]) -> Tensor:
        return self.normalise(torch.stack([fields[k].float() for k in self.keys], dim=-1))

    def forward(self, q: Tensor, x: Tensor) -> dict[str, Tensor]:
        return {"value": self.head(q)}

    def cost(self, outputs, batch) -> Tensor | None:
        if not self.cost_weight:
            return None
        return self.cost_weight * losses.l1_cost(outputs["value"].float(), self.targets(batch))

    def loss(self, outputs, aligned, matched, batch) -> dict[str, Tensor]:
        loss = losses.l1_loss(outputs["value"].float(), self.targets(aligned), matched)
        return {"l1": self.loss_weight * loss}

    def predict(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        values = self.denormalise(outputs["value"].float())
        return dict(zip(self.fields, values.unbind(-1), strict=True))
