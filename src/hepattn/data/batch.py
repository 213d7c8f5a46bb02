"""The batch contract shared by data, models and metrics.

Keys are ``{object}_{field}``: ``hit_x`` (N,), ``particle_pt`` (T,). Every object has a
``{object}_valid`` mask (True = real, False = padding). A relation between two objects is
``{object}_{other}_valid``, e.g. ``particle_hit_valid`` (T, N): True where the hit belongs to the
particle. One event is a dict of unbatched tensors; ``collate`` pads a list of events to a batch
along every dimension (``False`` for masks, 0 elsewhere).
"""

import torch
from torch import Tensor


def valid_key(name: str) -> str:
    """The mask key of an object or relation, e.g. ``valid_key("hit") == "hit_valid"``."""
    return f"{name}_valid"


def pad(tensor: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Pad ``tensor`` at the end of each dimension up to ``shape`` (False / 0)."""
    if tuple(tensor.shape) == tuple(shape):
        return tensor
    if any(s < t for s, t in zip(shape, tensor.shape, strict=True)):
        raise ValueError(f"cannot pad a tensor of shape {tuple(tensor.shape)} to smaller {tuple(shape)}")
    out = tensor.new_zeros(shape)
    out[tuple(slice(0, n) for n in tensor.shape)] = tensor
    return out


def collate(events: list[dict[str, Tensor]], pad_to: dict[str, int] | None = None) -> dict[str, Tensor]:
    """Stack events into a batch, padding each key to the largest event.

    Args:
        events: one dict per event with the same keys; tensors of one key share their rank.
        pad_to: optional fixed sizes per object name (e.g. ``{"particle": 300}``) so that shapes do
            not change between batches (useful for ``torch.compile``). An object's size is the
            length of its ``{object}_valid`` mask.

    Returns:
        A dict of tensors with a leading batch dimension.
    """
    if not events:
        raise ValueError("cannot collate an empty list of events")
    keys = events[0].keys()
    for i, event in enumerate(events[1:], start=1):
        if event.keys() != keys:
            raise ValueError(f"event {i} has keys {sorted(event)} but event 0 has {sorted(keys)}")
    fixed = _fixed_sizes(events[0], pad_to or {})
    batch = {}
    for key in keys:
        shape = [max(int(e[key].shape[d]) for e in events) for d in range(events[0][key].dim())]
        for dim, size in fixed.get(key, {}).items():
            if shape[dim] > size:
                raise ValueError(f"{key} has size {shape[dim]} along dim {dim}, more than pad_to={size}")
            shape[dim] = size
        batch[key] = torch.stack([pad(e[key], tuple(shape)) for e in events])
    return batch


def _fixed_sizes(event: dict[str, Tensor], pad_to: dict[str, int]) -> dict[str, dict[int, int]]:
    """Map each key to {dim: size} for the dims whose object has a fixed size in ``pad_to``."""
    lengths = {name: int(event[valid_key(name)].shape[0]) for name in pad_to if valid_key(name) in event}
    missing = set(pad_to) - set(lengths)
    if missing:
        raise ValueError(f"pad_to names objects without a *_valid mask: {sorted(missing)}")
    fixed: dict[str, dict[int, int]] = {}
    for key, tensor in event.items():
        name = key.split("_")[0]
        if name in pad_to and tensor.dim() > 0 and tensor.shape[0] == lengths[name]:
            fixed.setdefault(key, {})[0] = pad_to[name]
        # relations such as particle_hit_valid carry the second object along dim 1
        parts = key.split("_")
        if len(parts) == 3 and parts[2] == "valid" and parts[1] in pad_to and tensor.dim() > 1:
            fixed.setdefault(key, {})[1] = pad_to[parts[1]]
    return fixed


def pack(x: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Pack a padded batch (B, N, ...) into one sequence (1, sum n_b, ...) without padding.

    Valid entries must be a prefix of each row (padding at the end), as ``collate`` makes them.

    Returns:
        The packed tensor and ``cu_seqlens`` (B + 1,) int32 offsets of each event.
    """
    lengths = valid.sum(-1)
    cu_seqlens = torch.zeros(len(lengths) + 1, dtype=torch.int32, device=x.device)
    cu_seqlens[1:] = torch.cumsum(lengths, 0)
    return x[valid].unsqueeze(0), cu_seqlens


def unpack(x: Tensor, cu_seqlens: Tensor, valid: Tensor) -> Tensor:
    """Inverse of ``pack``: scatter (1, sum n_b, ...) back into the padded layout of ``valid``."""
    out = x.new_zeros((*valid.shape, *x.shape[2:]))
    out[valid] = x[0]
    return out
