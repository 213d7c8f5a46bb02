# B batch, N/Nq/Nk constituents (queries/keys), D dim, H heads, Dh head dim.
import math
from itertools import pairwise

import pytest
import torch

from hepattn.models import kernels
from hepattn.models.attention import CAPABILITIES, Attention

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

D, H, W, G = 32, 2, 8, 3
LENGTHS = (45, 30, 6)  # one padded batch of different lengths; 6 <= W makes the cyclic window alias
KV_LENGTHS = (37, 20, 5)  # cross-attention keys

# case -> (features it needs, Attention kwargs); window cases are self-attention only
CASES = {
    "kv_padding": (set(), {}),
    "attn_valid": ({"attn_mask"}, {"attn_mask": True}),
    "window": ({"window"}, {"window": W}),
    "window_wrap": ({"window", "wrap"}, {"window": W, "wrap": True}),
    "window_global": ({"window", "wrap", "global"}, {"window": W, "wrap": True, "num_global": G}),
    "varlen": ({"varlen"}, {"varlen": True}),
}


def fake_flash_varlen(q, k, v, cu_q, cu_k, max_q, max_k, window_size=(-1, -1)):
    """flash_attn_varlen_func's documented contract on CPU: query i of a segment sees the keys
    [i + sk - sq - left, i + sk - sq + right] (bottom-right aligned), -1 meaning unbounded."""
    assert cu_q.dtype == cu_k.dtype == torch.int32
    assert max_q >= cu_q.diff().max() and max_k >= cu_k.diff().max()
    out = torch.zeros_like(q)
    left, right = window_size
    for (qs, qe), (ks, ke) in zip(pairwise(cu_q.tolist()), pairwise(cu_k.tolist()), strict=True):
        i = torch.arange(qe - qs)[:, None] + (ke - ks) - (qe - qs)
        j = torch.arange(ke - ks)
        ok = ((j >= i - left) | (left < 0)) & ((j <= i + right) | (right < 0))
        s = torch.einsum("qhd,khd->hqk", q[qs:qe], k[ks:ke]) / math.sqrt(q.shape[-1])
        out[qs:qe] = torch.einsum("hqk,khd->qhd", s.masked_fill(~ok, -math.inf).softmax(-1), v[ks:ke])
    return out


@pytest.fixture
def small_blocks(monkeypatch):
    """Several query blocks per event (and a ragged last one) in the torch kernel's local attention."""
    monkeypatch.setattr(kernels, "LOCAL_BLOCK", 16)


@pytest.fixture
def fake_flash(monkeypatch):
    monkeypatch.setattr(kernels, "flash_attn_varlen_func", fake_flash_varlen)


# ---------------------------------------------------------------- the float64 oracle


def window_allowed(n: int, size: int, window: int, wrap: bool, num_global: int) -> torch.Tensor:
    """(size, size) allowed mask of one event with n valid constituents, straight from the definition."""
    allowed = torch.zeros(size, size, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            d = abs(i - j)
            if wrap:
                d = min(d, n - num_global - d)  # the ring holds the n - G non-global constituents
            allowed[i, j] = i < num_global or j < num_global or d <= window // 2
    return allowed


def reference(attn: Attention, x, kv, allowed):
    """Explicit float64 softmax over the dense allowed mask (B, Nq, Nk) with the module's weights."""
    wq, (wk, wv), wo = attn.q_proj.weight, attn.kv_proj.weight.chunk(2), attn.out_proj.weight
    x, kv, wq, wk, wv, wo = (t.double() for t in (x, kv, wq, wk, wv, wo))

    def heads(t):
        return t.unflatten(-1, (H, -1)).transpose(1, 2)

    q, k, v = heads(x @ wq.T), heads(kv @ wk.T), heads(kv @ wv.T)
    scores = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).masked_fill(~allowed[:, None], -math.inf)
    p = scores.softmax(-1).nan_to_num(0.0)  # a query with no allowed key gets zeros
    return (p @ v).transpose(1, 2).flatten(2) @ wo.T


def make_case(case: str, mode: str):
    """Inputs (float64, CPU), forward kwargs, the allowed mask (B, Nq, Nk) and the rows to compare."""
    g = torch.Generator().manual_seed(0)
    B, N = len(LENGTHS), max(LENGTHS)
    x = torch.randn(B, N, D, generator=g, dtype=torch.float64)
    valid = torch.arange(N) < torch.tensor(LENGTHS)[:, None]
    if case == "varlen":  # the same events packed back to back: one block-diagonal event mask
        allowed = torch.block_diag(*[torch.ones(n, n, dtype=torch.bool) for n in LENGTHS])[None]
        return x[valid][None], None, {"cu_seqlens": packed_offsets()}, allowed, allowed.any(-1)
    if case.startswith("window"):
        kw = CASES[case][1]
        allowed = [window_allowed(n, N, W, kw.get("wrap", False), kw.get("num_global", 0)) for n in LENGTHS]
        return x, None, {"x_valid": valid}, torch.stack(allowed), valid
    if mode == "self":
        kv, forward, rows = None, {"x_valid": valid}, valid  # padded queries are not compared
    else:
        kv = torch.randn(B, max(KV_LENGTHS), D, generator=g, dtype=torch.float64)
        kv_valid = torch.arange(kv.shape[1]) < torch.tensor(KV_LENGTHS)[:, None]
        forward, rows = {"kv_valid": kv_valid}, torch.ones_like(valid)
    key_valid = valid if kv is None else forward["kv_valid"]
    allowed = key_valid[:, None, :].expand(B, N, -1)
    if case == "attn_valid":
        attn_valid = torch.rand(allowed.shape, generator=g) < 0.6
        attn_valid[0, 3] = False  # a query with no allowed key must give zeros
        forward["attn_valid"], allowed = attn_valid, allowed & attn_valid
    return x, kv, forward, allowed, rows


def packed_offsets() -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(LENGTHS).cumsum(0).tolist()], dtype=torch.int32)


# ---------------------------------------------------------------- every kernel equals the oracle

# backend -> (kernel, device, dtype, tolerance). Eager flex on CPU accepts float64, so it is held to the
# float64 tolerance; "flash_emulated" runs our flash glue (unpad, circular wrap, scatter) on CPU against
# fake_flash_varlen; real flash-attn runs in bf16 on CUDA.
BACKENDS = {
    "torch": ("torch", "cpu", torch.float64, 1e-10),
    "flex": ("flex", "cpu", torch.float64, 1e-10),
    "flash_emulated": ("flash", "cpu", torch.float64, 1e-10),
    "flash": ("flash", "cuda", torch.bfloat16, 3e-2),
}


def combinations():
    for backend, (kernel, *_) in BACKENDS.items():
        for case, (needs, _) in CASES.items():
            if not needs <= CAPABILITIES[kernel]:
                continue
            for mode in ("self", "cross") if case in ("kv_padding", "attn_valid") else ("self",):
                marks = [pytest.mark.gpu] if backend == "flash" else []
                yield pytest.param(backend, case, mode, marks=marks, id=f"{backend}-{case}-{mode}")


@pytest.mark.parametrize(("backend", "case", "mode"), list(combinations()))
def test_kernel_matches_reference(backend, case, mode, small_blocks, monkeypatch):
    kernel, device, dtype, tol = BACKENDS[backend]
    if backend == "flash_emulated":
        monkeypatch.setattr(kernels, "flash_attn_varlen_func", fake_flash_varlen)
    if backend == "flash" and not kernels.has_flash_attn():
        pytest.skip("flash-attn is not installed")
    torch.manual_seed(0)
    attn = Attention(D, H, kernel, **CASES[case][1]).to(device, dtype)
    x, kv, forward, allowed, rows = make_case(case, mode)
    x, kv = (None if t is None else t.to(device, dtype) for t in (x, kv))
    with torch.no_grad():
        out, _ = attn(x, kv, **{name: t.to(device) for name, t in forward.items()})
        expected = reference(attn, x, x if kv is None else kv, allowed)
    assert out.isfinite().all()  # padded queries included
    torch.testing.assert_close(out.double().cpu()[rows], expected[rows], atol=tol, rtol=tol)


@pytest.mark.parametrize("kernel", ["torch", "flex", "flash"])
@pytest.mark.parametrize("config", [{}, {"window": W}, {"window": W, "wrap": True, "num_global": G}])
def test_varlen_equals_padded(kernel, config, small_blocks, fake_flash):
    if kernel == "flash" and config.get("num_global"):
        pytest.skip("flash has no global tokens")
    torch.manual_seed(0)
    attn = Attention(D, H, kernel, varlen=True, **config).double()
    x, _, forward, _, valid = make_case("window", "self")
    with torch.no_grad():
        padded, _ = attn(x, **forward)
        packed, _ = attn(x[valid][None], cu_seqlens=packed_offsets())
    torch.testing.assert_close(packed[0], padded[valid], atol=1e-10, rtol=1e-10)


def test_windowed_torch_gradients_match_reference(small_blocks):
    torch.manual_seed(0)
    attn = Attention(D, H, window=W, wrap=True, num_global=G).double()
    x, _, forward, allowed, valid = make_case("window_global", "self")
    x.requires_grad_(True)
    grads = []
    for model in (lambda: attn(x, **forward)[0], lambda: reference(attn, x, x, allowed)):
        (model() * valid[..., None]).square().sum().backward()
        grads.append([x.grad, *(p.grad for p in attn.parameters())])
        x.grad = None
        attn.zero_grad(set_to_none=True)
    for got, expected in zip(*grads, strict=True):
        assert got.isfinite().all()
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize(("window", "block"), [(512, 256), (64, 32)])  # block: W / 2 within [32, 256]
@pytest.mark.parametrize("num_global", [0, 4])
def test_windowed_torch_never_forms_n_by_n_scores(monkeypatch, num_global, window, block):
    """N = 16384: every SDPA call sees at most block + W + G keys (G global queries aside)."""
    N, calls = 16384, []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):
        calls.append((q.shape[-2], k.shape[-2]))
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(kernels.F, "scaled_dot_product_attention", spy)
    attn = Attention(64, 4, window=window, wrap=True, num_global=num_global)
    with torch.no_grad():
        out, _ = attn(torch.randn(1, N, 64))
    assert out.isfinite().all()
    assert calls
    assert all(lk <= block + window + num_global or lq <= num_global for lq, lk in calls)


# ---------------------------------------------------------------- build-time checks

FEATURE_KWARGS = {
    "attn_mask": {"attn_mask": True},
    "window": {"window": W},
    "wrap": {"window": W, "wrap": True},
    "global": {"window": W, "num_global": G},
    "varlen": {"varlen": True},
}
UNSUPPORTED = [(k, f) for k, caps in CAPABILITIES.items() for f in sorted(set(FEATURE_KWARGS) - caps)]


@pytest.mark.parametrize(("kernel", "feature"), UNSUPPORTED)
def test_unsupported_feature_fails_at_build(kernel, feature, fake_flash):
    with pytest.raises(ValueError, match=f"kernel '{kernel}' does not support {feature}; use one of"):
        Attention(D, H, kernel, **FEATURE_KWARGS[feature])


def test_unknown_kernel_fails_at_build():
    with pytest.raises(
        ValueError, match="unknown attention kernel 'sdpa'; choose one of: torch, flex, flash"
    ):
        Attention(D, H, "sdpa")


@pytest.mark.skipif(kernels.has_flash_attn(), reason="flash-attn is installed")
def test_flash_without_package_fails_at_build():
    with pytest.raises(ImportError, match=r"kernel 'flash' needs .*pip install hepattn\[flash\]"):
        Attention(D, H, "flash")


@pytest.mark.parametrize(
    ("build", "inputs", "message"),
    [
        ({}, {"attn_valid": torch.ones(1, 4, 4, dtype=torch.bool)}, "attn_mask=False"),
        ({}, {"cu_seqlens": torch.tensor([0, 4], dtype=torch.int32)}, "varlen=False"),
        ({"window": W}, {"kv": torch.randn(1, 4, D)}, "self-attention only"),
    ],
)
def test_undeclared_inputs_are_refused(build, inputs, message):
    """No kernel silently ignores an input that the module was not built for."""
    with pytest.raises(ValueError, match=message):
        Attention(D, H, **build)(torch.randn(1, 4, D), **inputs)


# ---------------------------------------------------------------- qk_norm and value residual


@pytest.mark.parametrize("qk_norm", [True, False])
def test_qk_norm_makes_output_invariant_to_qk_scale(qk_norm):
    torch.manual_seed(0)
    attn = Attention(D, H, qk_norm=qk_norm).double()
    x = torch.randn(2, 10, D, dtype=torch.float64)
    with torch.no_grad():
        before, _ = attn(x)
        attn.q_proj.weight.mul_(5.0)
        attn.kv_proj.weight[:D].mul_(5.0)  # the key half
        after, _ = attn(x)
    assert torch.allclose(before, after, atol=1e-8) == qk_norm


def test_value_residual_mixes_with_first_values():
    torch.manual_seed(0)
    attn = Attention(D, H, value_residual=True).double()
    plain = Attention(D, H).double()
    plain.load_state_dict(attn.state_dict(), strict=False)  # everything but lam
    x = torch.randn(2, 10, D, dtype=torch.float64)
    with torch.no_grad():
        out_plain, v = plain(x)
        v_first = torch.randn_like(v)
        torch.testing.assert_close(attn(x)[0], out_plain)  # first layer: nothing to mix
        torch.testing.assert_close(attn(x, v_first=v)[0], out_plain)  # mixing v with itself
        torch.testing.assert_close(attn(x, v_first=v_first)[1], 0.5 * v + 0.5 * v_first)  # lam starts at 0.5
        attn.value_residual.lam.fill_(1.0)
        torch.testing.assert_close(attn(x, v_first=v_first)[0], out_plain)  # lam = 1: no mixing
        torch.testing.assert_close(plain(x, v_first=v_first)[0], out_plain)  # switched off: v_first ignored


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")
def test_compiled_flex_matches_eager():
    """Compiled flex fuses the kernel instead of materialising the scores; it must agree with eager.

    dynamic=False: in torch 2.13 inductor's CPU flex template emits C++ that fails to build for dynamic
    shapes (the automatic retrace after a second sequence length).
    """
    torch.manual_seed(0)
    attn = Attention(D, H, "flex", **CASES["window_global"][1])
    x, _, forward, _, rows = make_case("window_global", "self")
    with torch.no_grad():
        eager, _ = attn(x.float(), **forward)
        compiled, _ = torch.compile(attn, dynamic=False)(x.float(), **forward)
    torch.testing.assert_close(compiled[rows], eager[rows], atol=1e-5, rtol=1e-5)
