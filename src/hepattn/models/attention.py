# B batch, N/Nq/Nk constituents (queries/keys), D dim, H heads, Dh head dim.
"""Multi-head attention: one module owning the projections, a kernel table and one dispatch.

Masks follow the ``*_valid`` convention (True = real / may attend); kernels convert at their boundary.
Windowed attention assumes the valid constituents of each event are a prefix of its row.
"""

from functools import partial

import torch
from torch import Tensor, nn

from hepattn.models.kernels import flash_kernel, flex_kernel, has_flash_attn, torch_kernel

KERNELS = {"torch": torch_kernel, "flex": flex_kernel, "flash": flash_kernel}

# kv_padding is always available; the other features are declared when the module is built.
CAPABILITIES = {
    "torch": {"kv_padding", "attn_mask", "window", "wrap", "global", "varlen"},
    "flex": {"kv_padding", "attn_mask", "window", "wrap", "global", "varlen"},
    "flash": {"kv_padding", "window", "wrap", "varlen"},
}


def check_kernel(kernel: str, features: set[str]) -> None:
    """Raise at build time if `kernel` is unknown, not installed, or lacks one of `features`."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown attention kernel '{kernel}'; choose one of: {', '.join(KERNELS)}")
    if kernel == "flash" and not has_flash_attn():
        raise ImportError("attention kernel 'flash' needs the flash-attn package: pip install hepattn[flash]")
    for feature in sorted(features - CAPABILITIES[kernel]):
        others = ", ".join(name for name, caps in CAPABILITIES.items() if feature in caps)
        raise ValueError(f"kernel '{kernel}' does not support {feature}; use one of: {others}")


class ValueResidual(nn.Module):
    """Value residual learning: mix this layer's values with the first layer's (arXiv 2410.17897)."""

    def __init__(self):
        super().__init__()
        self.lam = nn.Parameter(torch.tensor(0.5))

    def forward(self, v: Tensor, v_first: Tensor | None = None) -> Tensor:
        return v if v_first is None else self.lam * v + (1 - self.lam) * v_first


class NoValueResidual(nn.Module):
    """Identity stand-in for `ValueResidual` when it is switched off."""

    def forward(self, v: Tensor, v_first: Tensor | None = None) -> Tensor:
        return v


class Attention(nn.Module):
    """Multi-head attention: q/kv/out projections and the head split around one kernel call."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        kernel: str = "torch",
        *,
        window: int | None = None,
        wrap: bool = False,
        num_global: int = 0,
        attn_mask: bool = False,
        varlen: bool = False,
        qk_norm: bool = False,
        value_residual: bool = False,
        bias: bool = False,
    ):
        """Multi-head self- or cross-attention with a kernel picked by name.

        Args:
            dim: Model dimension D.
            num_heads: Number of heads H; D must be divisible by H.
            kernel: One of `KERNELS` ("torch", "flex", "flash"); see `CAPABILITIES`.
            window: Self-attention window W: query i sees key j iff |i - j| <= W // 2, counting positions
                over the valid constituents of each event (after the global tokens). None = full attention.
            wrap: Measure the window distance cyclically over the n valid constituents (phi is periodic).
            num_global: Number G of leading global (register) tokens that see and are seen by every valid
                token on top of the window. Without a window they are ordinary tokens.
            attn_mask: Forward will be given `attn_valid` (e.g. MaskFormer mask attention).
            varlen: Forward may be given packed sequences, x (1, total, D) with `cu_seqlens`.
            qk_norm: RMSNorm over the head dim on q and k.
            value_residual: Mix the values with `v_first`, the first layer's values.
            bias: Use biases in the projections.
        """
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if window is not None and window < 1:
            raise ValueError(f"window must be a positive number of constituents, got {window}")
        if wrap and window is None:
            raise ValueError("wrap needs a window")
        if window is not None and attn_mask:
            raise ValueError("window cannot be combined with attn_mask: attn_valid is already dense")
        requested = {
            "window": window is not None,
            "wrap": wrap,
            "global": window is not None and num_global > 0,
            "attn_mask": attn_mask,
            "varlen": varlen,
        }
        check_kernel(kernel, {feature for feature, on in requested.items() if on})
        self.num_heads, self.window, self.attn_mask, self.varlen = num_heads, window, attn_mask, varlen
        self.summary = f"kernel={kernel}, num_heads={num_heads}, window={window}, wrap={wrap}, G={num_global}"
        self.kernel = partial(KERNELS[kernel], window=window, wrap=wrap, num_global=num_global)
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.kv_proj = nn.Linear(dim, 2 * dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)
        # QK-norm keeps attention logits bounded (arXiv 2302.05442).
        self.q_norm = nn.RMSNorm(dim // num_heads) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(dim // num_heads) if qk_norm else nn.Identity()
        self.value_residual = ValueResidual() if value_residual else NoValueResidual()

    def forward(
        self,
        x: Tensor,
        kv: Tensor | None = None,
        *,
        x_valid: Tensor | None = None,
        kv_valid: Tensor | None = None,
        attn_valid: Tensor | None = None,
        cu_seqlens: Tensor | None = None,
        v_first: Tensor | None = None,
        reuse: dict | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Attend from `x` to `kv` (or to `x` itself when `kv` is None).

        Args:
            x: Queries (B, Nq, D), or packed events (1, total, D) with `cu_seqlens`.
            kv: Keys/values (B, Nk, D); None for self-attention.
            x_valid: (B, Nq) real queries; for self-attention also the key padding unless `kv_valid` is given.
            kv_valid: (B, Nk) real keys.
            attn_valid: (B, Nq, Nk) True where query i may attend key j.
            cu_seqlens: (S + 1,) int32 segment offsets into the packed tokens; no attention across segments.
            v_first: (B, H, Nk, Dh) values of the first layer, for value residual learning.
            reuse: a dict shared by the calls of one forward pass over the same constituents, in which the
                kernel keeps its masks and indices between layers (see `kernels`); None: none kept.

        Returns:
            out (B, Nq, D) and v (B, H, Nk, Dh) after value mixing. Queries with no allowed key give zeros.
        """
        if kv is None:
            kv, kv_valid = x, x_valid if kv_valid is None else kv_valid
        self._check_inputs(kv is x, kv_valid, attn_valid, cu_seqlens)
        q = self.q_proj(x).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # (B, H, Nq, Dh)
        # (B, H, Nk, Dh) each
        k, v = self.kv_proj(kv).unflatten(-1, (2, self.num_heads, -1)).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        v = self.value_residual(v, v_first)
        out = self.kernel(
            q, k, v, kv_valid=kv_valid, attn_valid=attn_valid, cu_seqlens=cu_seqlens, reuse=reuse
        )
        return self.out_proj(out.transpose(1, 2).flatten(2)), v

    def extra_repr(self) -> str:
        return self.summary

    def _check_inputs(self, is_self: bool, kv_valid, attn_valid, cu_seqlens) -> None:
        """Inputs must match what was declared at build time, so no kernel silently ignores one."""
        if self.window is not None and not is_self:
            raise ValueError("window attention is self-attention only")
        if attn_valid is not None and not self.attn_mask:
            raise ValueError("attn_valid given to an Attention built with attn_mask=False")
        if cu_seqlens is not None and not self.varlen:
            raise ValueError("cu_seqlens given to an Attention built with varlen=False")
        if cu_seqlens is not None and kv_valid is not None:
            raise ValueError("packed sequences (cu_seqlens) carry no padding: drop x_valid/kv_valid")


def available_kernels() -> list[str]:
    """The kernels this installation can build (flash needs the flash-attn package)."""
    return [name for name in KERNELS if name != "flash" or has_flash_attn()]
