# N hits, D dim, H heads.
"""Windowed encoder attention never builds an N x N tensor on CPU: its memory grows linearly in N."""

import pytest
import torch

from hepattn.bench.cases import build_module
from hepattn.bench.timing import GB, MB, PeakMemory, cpu_peak_supported, measure
from hepattn.models.attention import Attention
from hepattn.models.kernels import compiled_flex_on_cpu

pytestmark = [
    pytest.mark.skipif(not cpu_peak_supported(), reason="needs /proc/self/clear_refs (Linux)"),
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated"),  # inside inductor
]
CPU = torch.device("cpu")
# flash is CUDA only; on a CPU without AVX-512 flex runs eagerly, which builds N x N scores by design
EAGER_FLEX = pytest.mark.skipif(not compiled_flex_on_cpu(), reason="no compiled CPU flex: eager is N x N")
KERNELS = ["torch", pytest.param("flex", marks=EAGER_FLEX)]


def window_peak(kernel: str, n: int) -> int:
    """Peak bytes of one windowed self-attention (D 64, H 4, W 512, wrap) over n tokens, after a warm-up."""
    torch.manual_seed(0)
    attn = Attention(64, 4, kernel, window=512, wrap=True).eval()
    x = torch.randn(1, n, 64)

    def forward():
        with torch.no_grad():
            return attn(x)

    return measure(forward, CPU, repeats=1, warmup=1).peak_bytes


@pytest.mark.parametrize("kernel", KERNELS)
def test_window_memory_grows_linearly(kernel):
    small, large = window_peak(kernel, 4096), window_peak(kernel, 16384)
    # 4x the tokens: about 4x the memory; an N x N score matrix would be 16x, 4 GiB in float32 at 16k
    assert large < 6 * small
    assert large < 256 * MB


@pytest.mark.slow
@pytest.mark.parametrize("kernel", KERNELS)
def test_64k_hit_encoder_forward_within_8_gb(kernel):
    """The shipped tracker's encoder (dim 256, 8 layers, window 512) on 65,536 hits, inputs included.

    The peak counts everything the process touches from before the inputs exist, flex's compilation
    included; one layer's N x N float32 scores alone would be 8 x 64k x 64k x 4 B = 128 GiB.
    """
    n = 65536
    encoder = build_module("tracking", kernel, "full", CPU)[0].model.encoder.eval()
    peak = PeakMemory(CPU)
    peak.start()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, n, 256, generator=g)
    with torch.no_grad():
        out = encoder(x, torch.ones(1, n, dtype=torch.bool))
    used = peak.stop()
    assert out.shape == (1, n, 256) and out.isfinite().all()
    assert used < 8 * GB, f"{used / GB:.2f} GiB"
