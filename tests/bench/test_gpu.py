# B batch, N hits, Q queries, D dim, H heads.
"""The CUDA path: flex mask attention equals the dense reference, bf16 runs, memory stays linear.

Every test needs a CUDA device (``gpu`` marker; skipped elsewhere). All passed on an NVIDIA H200 with
torch 2.11 on 2026-11-29 (docs/benchmarks.md, "GPU results"), except the block-table test, written after.
"""

import json
from functools import partial

import pytest
import torch

from hepattn.bench.cases import build_module
from hepattn.bench.timing import GB, PeakMemory
from hepattn.cli import main
from hepattn.models import kernels
from hepattn.models.attention import Attention, available_kernels
from hepattn.models.criterion import SetCriterion
from hepattn.models.decoder import Decoder
from hepattn.models.encoder import Encoder
from hepattn.models.matcher import HungarianMatcher
from hepattn.models.tasks.mask import ObjectMaskTask

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 2e-4), (torch.bfloat16, 4e-2)])
def test_flex_mask_attention_decoder_equals_dense_torch(dtype, tol):
    torch.manual_seed(0)
    dense = Decoder(64, depth=2, num_heads=4, kernel="torch", mask_attention=True)
    flex = Decoder(64, depth=2, num_heads=4, kernel="flex", mask_attention=True)
    flex.load_state_dict(dense.state_dict())
    task = ObjectMaskTask("track_hit", 64)
    dense, flex, task = (m.to(CUDA, dtype).eval() for m in (dense, flex, task))
    g = torch.Generator(device=CUDA).manual_seed(0)
    q = torch.randn(2, 50, 64, device=CUDA, dtype=dtype, generator=g)
    x = torch.randn(2, 3000, 64, device=CUDA, dtype=dtype, generator=g)
    x_valid = torch.arange(3000, device=CUDA) < torch.tensor([[3000], [2500]], device=CUDA)
    with torch.no_grad():
        mask_fn = partial(task.logits_from, x_embed=task.embed_inputs(x))
        expected = dense(q, x, x_valid, None, mask_fn)
        got = flex(q, x, x_valid, None, mask_fn)
    for (state_got, _), (state_expected, _) in zip(got, expected, strict=True):
        torch.testing.assert_close(state_got, state_expected, atol=tol, rtol=tol)


def test_flex_mask_attention_builds_no_dense_query_by_hit_tensor():
    """Q 2000 queries, N 60k hits, bf16: a dense (Q, N) 16-bit mask or score matrix alone is 229 MiB."""
    q_len, n = 2000, 60_000
    attn = Attention(256, 8, "flex", attn_mask=True).to(CUDA, torch.bfloat16).eval()
    q = torch.randn(1, q_len, 256, device=CUDA, dtype=torch.bfloat16)
    kv = torch.randn(1, n, 256, device=CUDA, dtype=torch.bfloat16)
    attn_valid = torch.rand(1, q_len, n, device=CUDA) < 0.01
    with torch.no_grad():
        attn(q, kv, attn_valid=attn_valid)  # compiles
        peak = PeakMemory(CUDA)
        peak.start()
        attn(q, kv, attn_valid=attn_valid)
        used = peak.stop()
    assert used < q_len * n * 2, f"{used / 2**20:.0f} MiB"


@pytest.mark.parametrize("kernel", [k for k in ("torch", "flex", "flash") if k in available_kernels()])
def test_64k_hit_encoder_in_bf16_within_8_gb(kernel):
    encoder = build_module("tracking", kernel, "full", CUDA)[0].model.encoder.eval()
    n = 65536
    x = torch.randn(1, n, 256, device=CUDA)
    peak = PeakMemory(CUDA)
    peak.start()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        out = encoder(x, torch.ones(1, n, dtype=torch.bool, device=CUDA))
    used = peak.stop()
    assert out.isfinite().all()
    assert used < 8 * GB, f"{used / GB:.2f} GiB"


def test_flex_encoder_outputs_and_gradients_equal_torch_on_cuda():
    """fp32 without TF32 (the conftest restores the precision that a LightningCLI build sets to "high")."""
    torch.manual_seed(0)
    ref = Encoder(64, depth=2, num_heads=4, kernel="torch", window=64, wrap=True).to(CUDA)
    flex = Encoder(64, depth=2, num_heads=4, kernel="flex", window=64, wrap=True).to(CUDA)
    flex.load_state_dict(ref.state_dict())
    x = torch.randn(2, 1000, 64, device=CUDA)
    valid = torch.arange(1000, device=CUDA) < torch.tensor([[1000], [700]], device=CUDA)
    outs = []
    for enc in (ref, flex):
        out = enc(x, valid)
        (out * valid[..., None]).square().sum().backward()
        outs.append(out.detach()[valid])
    torch.testing.assert_close(outs[1], outs[0], atol=1e-4, rtol=1e-4)
    for (name, p_ref), p_flex in zip(ref.named_parameters(), flex.parameters(), strict=True):
        torch.testing.assert_close(
            p_flex.grad, p_ref.grad, atol=1e-3, rtol=1e-3, msg=partial("{}: {}".format, name)
        )


def block_tiles(g: torch.Generator, rows: int, cols: int) -> torch.Tensor:
    """(rows, cols) mask of 128 x 128 tiles all allowed, all forbidden or mixed: full, empty and partial."""
    kind = torch.randint(0, 3, (-(-rows // 128), -(-cols // 128)), generator=g, device=CUDA)
    kind = kind.repeat_interleave(128, 0).repeat_interleave(128, 1)[:rows, :cols]
    return (kind == 1) | ((kind == 2) & (torch.rand(rows, cols, generator=g, device=CUDA) < 0.3))


@pytest.mark.parametrize("case", ["mask", "packed", "packed_window"])
def test_compiled_flex_reads_its_block_tables_like_the_torch_kernel(case):
    """Compiled flex visits only the listed blocks and skips the rule in full ones (eager flex on CPU does
    neither): with the block masks of mask attention (full blocks, padded keys) and of packed events
    (with and without a wrapped window) it equals the torch kernel, fp32 without TF32."""
    g = torch.Generator(device=CUDA).manual_seed(0)
    kw = {}
    if case == "mask":
        B, N = 2, 900
        kw["attn_valid"] = torch.stack([block_tiles(g, 700, N) for _ in range(B)])
        kw["attn_valid"][0, 3] = False
        kw["kv_valid"] = torch.arange(N, device=CUDA) < torch.tensor([[N], [650]], device=CUDA)
        nq = 700
    else:
        B, lengths = 1, [600, 40, 90, 7, 700, 300]
        kw["cu_seqlens"] = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], device=CUDA)
        N = nq = sum(lengths)
        if case == "packed_window":
            kw |= {"window": 258, "wrap": True, "num_global": 2}
    q = torch.randn(B, 4, nq, 32, generator=g, device=CUDA)
    k, v = (torch.randn(B, 4, N, 32, generator=g, device=CUDA) for _ in range(2))
    with torch.no_grad():
        got = kernels.flex_kernel(q, k, v, **kw)
        expected = kernels.torch_kernel(q, k, v, **kw)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=2e-5)


def test_matching_cost_is_float32_under_bf16_autocast():
    """A bf16 matmul would round the (Q, T) mask costs to 8 significant bits and tie many pairs."""
    torch.manual_seed(5)
    batch = {
        "hit_valid": torch.ones(1, 3000, dtype=torch.bool, device=CUDA),
        "particle_valid": torch.ones(1, 200, dtype=torch.bool, device=CUDA),
        "particle_hit_valid": torch.rand(1, 200, 3000, device=CUDA) < 0.01,
    }
    layer = {"mask": {"logit": torch.randn(1, 300, 3000, device=CUDA)}}
    criterion, tasks = SetCriterion(HungarianMatcher()), [ObjectMaskTask("mask", 8)]
    expected = criterion.cost(layer, tasks, batch)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        cost = criterion.cost(layer, tasks, batch)
    assert cost.dtype == torch.float32
    torch.testing.assert_close(cost, expected)


def test_sinkhorn_warm_start_on_cuda_keeps_the_optimum():
    """Potentials from the device; the host solves the square problem they give: same total cost."""
    generator = torch.Generator(device=CUDA).manual_seed(6)
    cost = 2.5 + 0.3 * torch.randn(3, 600, 400, device=CUDA, generator=generator)
    cost[:, :5] -= 1.0  # queries that every target likes, as in an untrained tracker's costs
    target_valid = torch.ones(3, 400, dtype=torch.bool, device=CUDA)
    plain = HungarianMatcher()(cost, None, target_valid)
    warm = HungarianMatcher(sinkhorn_iters=400)(cost, None, target_valid)
    assert warm.device == cost.device
    for b in range(3):
        totals = [
            cost[b].double().gather(1, m[b].clamp(min=0)[:, None])[m[b] >= 0].sum() for m in (plain, warm)
        ]
        torch.testing.assert_close(totals[1], totals[0], rtol=0, atol=1e-9)
        assert sorted(warm[b][warm[b] >= 0].tolist()) == list(range(400))


def test_bench_on_cuda_in_bf16_writes_every_row(tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "--device", "cuda", "--hits", "4000", "--parts", "encoder,decoder,model,train,matcher"]
    args += ["--repeats", "1", "--precision", "bf16", "--json", str(out)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["failed"] == [] and report["header"]["cuda"]["name"]
    modes = {(r["kernel"], r["mode"]) for r in report["rows"]}
    assert {("flex", "train"), ("flex", "model"), ("torch", "train"), ("scipy+sinkhorn", "matcher")} <= modes
    assert all(r["precision"] == "bf16" and r["peak_mb"] is not None for r in report["rows"])
