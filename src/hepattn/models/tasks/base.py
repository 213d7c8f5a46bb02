"""The task interface: a head, its matching cost, its losses and its predictions.

# B batch, N constituents, Q queries, T targets, D dim.

Two families share it. A ``ConstituentTask`` reads the encoder output and is trained directly
against per-constituent labels (hit filter, query seeds). An ``ObjectTask`` reads the decoder's
query states; the criterion matches queries to target objects with the summed ``cost`` of all
object tasks and then calls ``loss`` with the targets aligned to the queries.
"""

from torch import Tensor, nn


def check_weights(kind: str, weights: dict[str, float], known: dict, task: str) -> dict[str, float]:
    """Validate a ``{name: weight}`` dict against the functions a task knows."""
    unknown = set(weights) - set(known)
    if unknown:
        raise ValueError(f"task '{task}': unknown {kind} {sorted(unknown)}; choose from {sorted(known)}")
    return dict(weights)


class ConstituentTask(nn.Module):
    """A per-constituent head on the encoder output, over the constituents of one type."""

    name: str
    input_name: str  # the constituent type it reads, e.g. "hit"

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Raw outputs from the encoded constituents x (B, N, D)."""
        raise NotImplementedError

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Weighted losses by name."""
        raise NotImplementedError

    def predict(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError


class ObjectTask(nn.Module):
    """A per-query head on the decoder output, matched to target objects."""

    name: str
    target_object: str
    constituent_outputs: tuple[str, ...] = ()  # outputs whose last axis runs over the constituents

    def forward(self, q: Tensor, x: Tensor) -> dict[str, Tensor]:
        """Raw outputs from the queries q (B, Q, D) and the encoded constituents x (B, N, D)."""
        raise NotImplementedError

    def cost(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor | None:
        """Weighted matching cost (B, Q, T) of every query against every target, or None."""
        raise NotImplementedError

    def loss(
        self,
        outputs: dict[str, Tensor],
        aligned: dict[str, Tensor],
        matched: Tensor,
        batch: dict[str, Tensor],
    ) -> dict[str, Tensor]:
        """Weighted losses by name.

        Args:
            outputs: this task's raw outputs.
            aligned: every ``{target_object}_*`` batch field gathered to query order, (B, Q, ...),
                and ``query_valid`` (B, Q).
            matched: (B, Q) True where the query was matched to a target.
            batch: the batch, for constituent masks.
        """
        raise NotImplementedError

    def predict(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError
