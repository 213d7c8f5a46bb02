"""Windowed self-attention encoder over (phi-)sorted constituents.

# B batch, N constituents, G register tokens, D dim, H heads, Dh head dim.
"""

import torch
from torch import Tensor, nn

from hepattn.models.attention import Attention
from hepattn.models.layers import NormPlacement, feed_forward, layer_scale, norm_or_identity, norm_recipe


class EncoderLayer(nn.Module):
    """One self-attention block and one feed-forward block, each a residual branch."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        kernel: str = "torch",
        window: int | None = None,
        wrap: bool = False,
        num_global: int = 0,
        norm: NormPlacement = "pre",
        qk_norm: bool = False,
        layer_scale_init: float | None = None,
        value_residual: bool = False,
        mlp: str = "swiglu",
        mlp_ratio: float = 4.0,
        varlen: bool = False,
    ):
        super().__init__()
        recipe = norm_recipe(norm, qk_norm)
        self.attn_in = norm_or_identity(dim, recipe.attn_in)
        self.attn = Attention(
            dim, num_heads, kernel, window=window, wrap=wrap, num_global=num_global, varlen=varlen,
            qk_norm=recipe.qk_norm, value_residual=value_residual,
        )  # fmt: skip
        self.attn_scale = layer_scale(dim, layer_scale_init)
        self.attn_out = norm_or_identity(dim, recipe.attn_out)
        self.mlp_in = norm_or_identity(dim, recipe.mlp_in)
        self.mlp = feed_forward(mlp, dim, mlp_ratio)
        self.mlp_scale = layer_scale(dim, layer_scale_init)
        self.mlp_out = norm_or_identity(dim, recipe.mlp_out)

    def forward(
        self,
        x: Tensor,
        x_valid: Tensor | None = None,
        v_first: Tensor | None = None,
        cu_seqlens=None,
        reuse: dict | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Returns the new state (B, N, D) and this layer's attention values (B, H, N, Dh).

        ``reuse``: the attention kernel's masks shared with the other layers of the same forward pass.
        """
        a, v = self.attn(
            self.attn_in(x), x_valid=x_valid, cu_seqlens=cu_seqlens, v_first=v_first, reuse=reuse
        )
        x = self.attn_out(x + self.attn_scale(a))
        x = self.mlp_out(x + self.mlp_scale(self.mlp(self.mlp_in(x))))
        return x, v


class Registers(nn.Module):
    """Learned register tokens prepended to every event and dropped at the end (arXiv 2309.16588)."""

    def __init__(self, num: int, dim: int):
        super().__init__()
        self.num = num
        self.tokens = nn.Parameter(torch.randn(num, dim) * 0.02)

    def add(self, x: Tensor, x_valid: Tensor | None) -> tuple[Tensor, Tensor | None]:
        tokens = self.tokens.to(x.dtype).expand(x.shape[0], -1, -1)
        x = torch.cat([tokens, x], dim=1)
        if x_valid is not None:
            x_valid = torch.cat([x_valid.new_ones(x.shape[0], self.num), x_valid], dim=1)
        return x, x_valid

    def drop(self, x: Tensor) -> Tensor:
        return x[:, self.num :]


class NoRegisters(nn.Module):
    """Registers switched off: adds and drops nothing."""

    def add(self, x: Tensor, x_valid: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return x, x_valid

    def drop(self, x: Tensor) -> Tensor:
        return x


class Encoder(nn.Module):
    """A stack of ``EncoderLayer`` over constituents in the order it is given (``MaskFormer`` sorts them).

    On constituents sorted by phi a sliding window of W constituents is a neighbourhood in phi; with
    ``wrap`` the window is cyclic, since phi is periodic. Options: norm placement (pre, post, HybridNorm),
    QK-norm, LayerScale, value residual learning (arXiv 2410.17897), register tokens, SwiGLU or GELU
    feed-forward.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int = 8,
        kernel: str = "torch",
        window: int | None = None,
        wrap: bool = False,
        norm: NormPlacement = "pre",
        qk_norm: bool = False,
        layer_scale_init: float | None = None,
        value_residual: bool = False,
        num_registers: int = 0,
        mlp: str = "swiglu",
        mlp_ratio: float = 4.0,
        varlen: bool = False,
    ):
        """Build the encoder.

        Args:
            dim: embedding size D (the model width).
            depth: number of layers.
            num_heads: attention heads H (D must be divisible by H).
            kernel: attention kernel: "torch", "flex" or "flash" (``hepattn info`` lists what is usable).
            window: each constituent attends to the W nearest in the given order (None: all).
            wrap: the window is cyclic (for constituents sorted by an angle).
            norm: "pre", "post" or "hybrid" (HybridNorm, arXiv 2503.04598) placement of the LayerNorms.
            qk_norm: normalise queries and keys before the dot product (arXiv 2010.04245).
            layer_scale_init: initial value of LayerScale on each residual branch (arXiv 2103.17239);
                None: no LayerScale.
            value_residual: mix the first layer's values into every layer's (arXiv 2410.17897).
            num_registers: learned register tokens every constituent may attend to (arXiv 2309.16588).
            mlp: feed-forward block: "swiglu" (arXiv 2002.05202) or "gelu".
            mlp_ratio: hidden size of the feed-forward block over D.
            varlen: take packed events (``cu_seqlens``): no work on padding; ``MaskFormer`` packs for it.
        """
        super().__init__()
        self.dim = dim
        if varlen and num_registers:
            raise ValueError("register tokens are not supported with packed (varlen) sequences")
        self.varlen = varlen  # forward takes packed events (cu_seqlens); MaskFormer then packs its batches
        self.registers = Registers(num_registers, dim) if num_registers else NoRegisters()
        layer = dict(
            kernel=kernel, window=window, wrap=wrap, num_global=num_registers, norm=norm, qk_norm=qk_norm,
            layer_scale_init=layer_scale_init, value_residual=value_residual, mlp=mlp, mlp_ratio=mlp_ratio,
            varlen=varlen,
        )  # fmt: skip
        self.layers = nn.ModuleList(EncoderLayer(dim, num_heads, **layer) for _ in range(depth))
        self.out_norm = norm_or_identity(dim, norm_recipe(norm, qk_norm).final)

    def forward(
        self,
        x: Tensor,
        x_valid: Tensor | None = None,
        cu_seqlens: Tensor | None = None,
    ) -> Tensor:
        """Encode constituents.

        Args:
            x: (B, N, D) embedded constituents, or (1, total, D) packed with ``cu_seqlens``.
            x_valid: (B, N) True for real constituents (padding at the end of each row).
            cu_seqlens: (B + 1,) int32 segment offsets of a packed batch.

        Returns:
            (B, N, D) encoded constituents, in the order given.
        """
        x, x_valid = self.registers.add(x, x_valid)
        v_first, reuse = None, {}  # every layer sees the same positions: its kernel's masks are built once
        for layer in self.layers:
            x, v = layer(x, x_valid, v_first, cu_seqlens, reuse)
            v_first = v if v_first is None else v_first
        return self.out_norm(self.registers.drop(x))
