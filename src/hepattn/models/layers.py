"""Building blocks shared by the encoder, the decoder and the task heads.

# B batch, N constituents, D dim.
"""

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

NormPlacement = Literal["pre", "post", "hybrid"]


class Mlp(nn.Module):
    """Two-layer feed-forward network with a GELU: ``fc2(gelu(fc1(x)))``."""

    def __init__(self, dim: int, hidden_dim: int, out_dim: int | None = None, bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim or dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """Gated feed-forward network ``fc2(silu(gate(x)) * up(x))`` (arXiv 2002.05202)."""

    def __init__(self, dim: int, hidden_dim: int, out_dim: int | None = None, bias: bool = False):
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden_dim, bias=bias)
        self.fc2 = nn.Linear(hidden_dim, out_dim or dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.fc2(nn.functional.silu(gate) * up)


FEED_FORWARDS = {"gelu": Mlp, "swiglu": SwiGLU}


def feed_forward(kind: str, dim: int, ratio: float = 4.0) -> nn.Module:
    """Build the feed-forward network named ``kind`` ("gelu" or "swiglu") with hidden size ratio * dim."""
    if kind not in FEED_FORWARDS:
        raise ValueError(f"unknown feed-forward '{kind}'; choose one of {sorted(FEED_FORWARDS)}")
    hidden = int(ratio * dim)
    if kind == "swiglu":
        hidden = int(2 * hidden / 3)  # keeps the parameter count of the GELU MLP
    return FEED_FORWARDS[kind](dim, hidden)


class LayerScale(nn.Module):
    """Per-channel learnable scale of a residual branch, initialised small (CaiT, arXiv 2103.17239)."""

    def __init__(self, dim: int, init: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


def layer_scale(dim: int, init: float | None) -> nn.Module:
    """A LayerScale with ``init``, or an identity when ``init`` is None."""
    return nn.Identity() if init is None else LayerScale(dim, init)


@dataclass(frozen=True)
class NormRecipe:
    """Where the norms of one residual block go: before/after the attention and the feed-forward branch."""

    attn_in: bool
    attn_out: bool
    mlp_in: bool
    mlp_out: bool
    qk_norm: bool
    final: bool  # a norm after the last layer (needed by pre-norm, whose residual stream is never normed)


def norm_recipe(placement: NormPlacement, qk_norm: bool = False) -> NormRecipe:
    """Resolve a norm placement into concrete choices.

    - ``pre``: ``x + f(norm(x))`` for both branches, plus a final norm.
    - ``post``: ``norm(x + f(x))`` for both branches (the original transformer).
    - ``hybrid``: HybridNorm (arXiv 2503.04598): QK-norm inside attention with an un-normed attention
      input, and post-norm around the feed-forward branch.
    """
    if placement == "pre":
        return NormRecipe(True, False, True, False, qk_norm, final=True)
    if placement == "post":
        return NormRecipe(False, True, False, True, qk_norm, final=False)
    if placement == "hybrid":
        return NormRecipe(False, False, False, True, True, final=False)
    raise ValueError(f"unknown norm placement '{placement}'; choose pre, post or hybrid")


def norm_or_identity(dim: int, on: bool) -> nn.Module:
    """A LayerNorm when ``on``, else an identity."""
    return nn.LayerNorm(dim) if on else nn.Identity()
