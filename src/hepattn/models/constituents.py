"""Several constituent types as one sequence: join them for the encoder, split them back for the tasks.

# B batch, N_t constituents of type t, N = sum_t N_t joined constituents, D dim.

Each type (e.g. ``pixel`` and ``strip`` hits, or ``track`` and ``cluster`` for particle flow) has its
own fields ``{type}_{field}`` (B, N_t) and padding mask ``{type}_valid``. The joined sequence lays the
types' constituents side by side, type after type (the "joined input order"), then sorts it: by a
field within each type (types stay in blocks) or by a field they share across types (they
interleave). Either way the padding goes last, so that the real constituents of an event are a prefix
of its row, as the packed (varlen) encoder needs.
"""

from dataclasses import dataclass

import torch
from torch import Tensor, nn


def sort_order(key: Tensor, valid: Tensor | None) -> Tensor:
    """Indices (B, N) that sort each event by ``key``, padding last."""
    if valid is not None:
        key = key.masked_fill(~valid, float("inf"))
    return torch.argsort(key, dim=-1, stable=True)


def gather_rows(x: Tensor, order: Tensor) -> Tensor:
    """``x[b, order[b]]`` for x of shape (B, N) or (B, N, ...)."""
    index = order.view(*order.shape, *([1] * (x.dim() - 2))).expand(*order.shape, *x.shape[2:])
    return x.gather(1, index)


def restore_order(inverse: Tensor, t: Tensor, dim: int) -> Tensor:
    """``t`` with its constituent axis ``dim`` put back in input order; ``inverse`` (B, N) undoes the sort."""
    shape = [1] * t.dim()
    shape[0], shape[dim] = inverse.shape
    return t.gather(dim, inverse.view(shape).expand(t.shape))


@dataclass
class Layout:
    """Where each constituent type sits in the joined, sorted sequence.

    Attributes:
        names: the types, in the order they are joined.
        sizes: N_t of each type (its padded length in the batch).
        order: (B, N) for each sorted position, its position in the joined input order.
        type_index: (B, N) for each sorted position, the index of its type in ``names``.
    """

    names: list[str]
    sizes: list[int]
    order: Tensor
    type_index: Tensor

    def __post_init__(self):
        self.inverse = self.order.argsort(-1)
        self.starts = [sum(self.sizes[:i]) for i in range(len(self.sizes))]

    def of_type(self, name: str) -> Tensor:
        """(B, N) True at the sorted positions that hold constituents of type ``name``."""
        return self.type_index == self.names.index(name)

    def join(self, fields: list[Tensor]) -> Tensor:
        """One per-type tensor (B, N_t, ...) for each type, in joined and sorted order (B, N, ...)."""
        return gather_rows(torch.cat(fields, dim=1), self.order)

    def join_field(self, batch: dict[str, Tensor], name: str, key: str) -> Tensor:
        """``batch[key]``, a field of type ``name``, over the joined, sorted sequence (0 elsewhere)."""
        value = batch[key]
        parts = [value if n == name else value.new_zeros((value.shape[0], s, *value.shape[2:]))
                 for n, s in zip(self.names, self.sizes, strict=True)]  # fmt: skip
        return self.join(parts)

    def split(self, t: Tensor, dim: int, name: str) -> Tensor:
        """Type ``name``'s constituents on axis ``dim`` of ``t`` (joined, sorted), in input order."""
        i = self.names.index(name)
        return restore_order(self.inverse, t, dim).narrow(dim, self.starts[i], self.sizes[i])

    def type_position(self, index: Tensor, name: str) -> Tensor:
        """Sorted positions (B, Q) as positions among the constituents of type ``name`` (clamped into it)."""
        i = self.names.index(name)
        return (self.order.gather(1, index) - self.starts[i]).clamp(0, self.sizes[i] - 1)


class TypeEmbedding(nn.Module):
    """A learned vector per constituent type, added to its constituents' embeddings."""

    def __init__(self, num_types: int, dim: int):
        super().__init__()
        self.vectors = nn.Parameter(torch.randn(num_types, dim) * 0.02)

    def forward(self, x: Tensor, type_index: int) -> Tensor:
        return x + self.vectors[type_index].to(x.dtype)


class NoTypeEmbedding(nn.Module):
    """One constituent type: nothing to tell apart."""

    def forward(self, x: Tensor, type_index: int) -> Tensor:
        return x


def layout(
    batch: dict[str, Tensor], names: list[str], sort_field: str | None, joint_sort: bool
) -> tuple[Layout, list[Tensor | None]]:
    """The layout of the joined sequence, and each type's own sort (None: its input order).

    With ``joint_sort`` the types interleave in ``sort_field`` order; otherwise each type is sorted by
    ``sort_field`` within its block (or kept in input order without a sort field). The per-type orders
    let the caller embed each type already sorted.
    """
    for name in names:
        needed = [f"{name}_valid"] + ([f"{name}_{sort_field}"] if sort_field is not None else [])
        missing = [k for k in needed if k not in batch]
        if missing:
            raise KeyError(f"batch has no {missing} for constituent type '{name}'")
    valids = [batch[f"{n}_valid"] for n in names]
    sizes = [v.shape[1] for v in valids]
    types = torch.cat([torch.full_like(v, i, dtype=torch.long) for i, v in enumerate(valids)], dim=1)
    valid = torch.cat(valids, dim=1)
    own: list[Tensor | None] = [None] * len(names)
    if sort_field is not None and joint_sort:
        key = torch.cat([batch[f"{n}_{sort_field}"].float() for n in names], dim=1)
        order = sort_order(key, valid)
    else:
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        if sort_field is not None:
            own = [sort_order(batch[f"{n}_{sort_field}"], v) for n, v in zip(names, valids, strict=True)]
        within = [torch.arange(s, device=valid.device).expand(len(valid), -1) if o is None else o
                  for o, s in zip(own, sizes, strict=True)]  # fmt: skip
        blocks = torch.cat([w + start for w, start in zip(within, starts, strict=True)], dim=1)
        # types in blocks, padding last: a stable sort on (type, or num_types for padding)
        rank = torch.where(gather_rows(valid, blocks), gather_rows(types, blocks), len(names))
        order = blocks.gather(1, torch.argsort(rank, dim=-1, stable=True))
    return Layout(list(names), sizes, order, gather_rows(types, order)), own
