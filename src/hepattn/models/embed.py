"""Input networks: named constituent fields to a D-dimensional embedding.

# B batch, N constituents, F input features, K Fourier frequencies, D dim.
"""

import math

import torch
from torch import Tensor, nn

from hepattn.models.layers import Mlp


class FourierEncoding(nn.Module):
    """Encode a field with sin/cos at K frequencies of a period: sin(2 pi k v / period).

    With ``spacing="linear"`` k = 1..K (harmonics); with ``"geometric"`` k = 1, 2, 4, ..., 2^(K-1), the
    multi-scale encoding of NeRF (arXiv 2003.08934), which resolves a period / 2^(K-1) with few
    features. With period 2 pi this is an exact encoding of an angle such as phi (continuous across
    +-pi; every k is an integer); with a period wider than the field's range (e.g. 8 for |eta| < 4) it
    is a smooth multi-scale encoding. Sine/cosine encodings let attention resolve small angular
    differences (arXiv 2006.10739).
    """

    def __init__(self, period: float, num_frequencies: int, spacing: str = "linear"):
        super().__init__()
        if spacing == "linear":
            k = torch.arange(1, num_frequencies + 1, dtype=torch.float32)
        elif spacing == "geometric":
            k = 2.0 ** torch.arange(num_frequencies, dtype=torch.float32)
        else:
            raise ValueError(f"unknown frequency spacing {spacing!r}: use 'linear' or 'geometric'")
        self.register_buffer("omega", 2 * math.pi * k / period, persistent=False)

    def forward(self, v: Tensor) -> Tensor:
        angle = v.unsqueeze(-1) * self.omega  # (B, N, K)
        return torch.cat([angle.sin(), angle.cos()], dim=-1)


class InputNet(nn.Module):
    """Embed the fields ``{input_name}_{field}`` of a batch, plus Fourier encodings of chosen fields."""

    def __init__(
        self,
        input_name: str,
        fields: list[str],
        dim: int,
        fourier_fields: dict[str, float] | None = None,
        num_frequencies: int = 8,
        hidden_dim: int | None = None,
        spacing: str = "linear",
    ):
        """Build the input network.

        Args:
            input_name: constituent name, e.g. "hit"; fields are read as ``batch[f"{input_name}_{f}"]``.
            fields: names of the scalar fields fed in as they are (scaled by the dataset).
            dim: output embedding size D.
            fourier_fields: field -> period for fields that are also Fourier-encoded (phi: 2 pi).
            num_frequencies: number of harmonics K per Fourier field.
            hidden_dim: hidden size of the MLP (default 2 D).
            spacing: the frequencies of the Fourier fields, ``"linear"`` (harmonics 1..K) or
                ``"geometric"`` (1, 2, 4, ..., 2^(K-1): fine scales, e.g. to tell apart the hits of
                neighbouring particles in a jet core); see ``FourierEncoding``.
        """
        super().__init__()
        self.input_name = input_name
        self.dim = dim
        self.fields = list(fields)
        fourier_fields = fourier_fields or {}
        self.fourier = nn.ModuleDict(
            {f: FourierEncoding(p, num_frequencies, spacing) for f, p in fourier_fields.items()}
        )
        self.input_dim = len(self.fields) + 2 * num_frequencies * len(self.fourier)
        self.net = Mlp(self.input_dim, hidden_dim or 2 * dim, dim)

    def features(self, batch: dict[str, Tensor]) -> Tensor:
        """The (B, N, F) input features of a batch; names the missing field if there is one."""
        name = self.input_name
        missing = [f for f in self.fields + list(self.fourier.keys()) if f"{name}_{f}" not in batch]
        if missing:
            raise KeyError(
                f"batch has no field(s) {[f'{name}_{f}' for f in missing]} for {type(self).__name__}"
            )
        raw = [batch[f"{name}_{f}"].unsqueeze(-1) for f in self.fields]
        enc = [module(batch[f"{name}_{f}"]) for f, module in self.fourier.items()]
        return torch.cat(raw + enc, dim=-1).float()

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.net(self.features(batch))
