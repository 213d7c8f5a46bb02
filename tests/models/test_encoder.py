import pytest
import torch

from hepattn.data.batch import pack, unpack
from hepattn.models.encoder import Encoder, EncoderLayer
from hepattn.models.layers import LayerScale, feed_forward, norm_recipe

D, H = 32, 4


def events(lengths, dim=D, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = max(lengths)
    x = torch.randn(len(lengths), n, dim, generator=g)
    valid = torch.arange(n) < torch.tensor(lengths)[:, None]
    return x, valid


@pytest.mark.parametrize("wrap", [False, True])
def test_window_limits_the_receptive_field(wrap):
    # Each layer sees W // 2 neighbours per side: after L layers a constituent further than L * W // 2
    # positions away (in the given order) cannot affect the output; with wrap the ring closes.
    torch.manual_seed(0)
    depth, window, n = 2, 8, 64
    enc = Encoder(D, depth=depth, num_heads=H, window=window, wrap=wrap).eval()
    x = torch.randn(1, n, D)
    x2 = x.clone()
    x2[0, n - 1] += torch.randn(D)  # perturb the last constituent
    changed = (enc(x, None) - enc(x2, None)).abs().amax(-1)[0] > 1e-6
    reach = depth * (window // 2)
    assert not changed[: n - 1 - reach].any() if not wrap else not changed[reach : n - 1 - reach].any()
    assert changed[0].item() == wrap  # the first constituent is a neighbour of the last only on a ring


def test_registers_keep_output_shape_and_take_part():
    torch.manual_seed(0)
    x, valid = events([30, 20])
    plain = Encoder(D, depth=1, num_heads=H, window=8)
    with_reg = Encoder(D, depth=1, num_heads=H, window=8, num_registers=4)
    with_reg.load_state_dict(plain.state_dict(), strict=False)
    out = with_reg(x, valid)
    assert out.shape == x.shape
    assert not torch.allclose(out[valid], plain(x, valid)[valid])  # the registers are attended to


def test_layer_scale_scales_the_branch_by_its_init_value():
    t = torch.randn(3, 5, D)
    torch.testing.assert_close(LayerScale(D, 0.1)(t), 0.1 * t)
    # with init 0 a pre-norm layer starts as the identity map
    layer = EncoderLayer(D, H, layer_scale_init=0.0)
    x = torch.randn(2, 10, D)
    torch.testing.assert_close(layer(x)[0], x)


@pytest.mark.parametrize("norm", ["post", "hybrid", "pre"])
def test_norm_placement_normalises_the_output(norm):
    # post and hybrid end each layer with a LayerNorm, pre adds a final one: outputs have zero mean
    # and unit variance per constituent.
    enc = Encoder(D, depth=2, num_heads=H, norm=norm)
    out = enc(torch.randn(2, 10, D) * 5 + 3)
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 10), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(2, 10), atol=1e-3, rtol=0)


def test_hybrid_norm_recipe():
    recipe = norm_recipe("hybrid")
    assert recipe.qk_norm and recipe.mlp_out and not recipe.attn_in and not recipe.attn_out
    with pytest.raises(ValueError, match="sandwich"):
        norm_recipe("sandwich")


def test_value_residual_with_lambda_one_equals_plain_encoder():
    torch.manual_seed(0)
    x, valid = events([30, 20])
    plain = Encoder(D, depth=3, num_heads=H, window=8)
    mixed = Encoder(D, depth=3, num_heads=H, window=8, value_residual=True)
    mixed.load_state_dict(plain.state_dict(), strict=False)
    lambdas = [p for n, p in mixed.named_parameters() if n not in dict(plain.named_parameters())]
    assert len(lambdas) == 3  # one learnable mix per layer
    with torch.no_grad():
        for p in lambdas:
            p.fill_(1.0)
    torch.testing.assert_close(mixed(x, valid)[valid], plain(x, valid)[valid])
    with torch.no_grad():
        for p in lambdas:
            p.fill_(0.5)
    assert not torch.allclose(mixed(x, valid)[valid], plain(x, valid)[valid])


def test_feed_forwards_have_comparable_size():
    gelu = sum(p.numel() for p in feed_forward("gelu", 96).parameters())
    swiglu = sum(p.numel() for p in feed_forward("swiglu", 96).parameters())
    assert abs(gelu - swiglu) / gelu < 0.05
    with pytest.raises(ValueError, match="relu"):
        feed_forward("relu", 96)


def test_packed_encoder_equals_padded_encoder():
    torch.manual_seed(0)
    x, valid = events([40, 17, 29])
    padded = Encoder(D, depth=2, num_heads=H, window=8, wrap=True).eval()
    packed = Encoder(D, depth=2, num_heads=H, window=8, wrap=True, varlen=True).eval()
    packed.load_state_dict(padded.state_dict())
    xp, cu = pack(x, valid)
    out = unpack(packed(xp, None, cu), cu, valid)
    torch.testing.assert_close(out[valid], padded(x, valid)[valid], atol=1e-5, rtol=1e-5)


def test_registers_with_varlen_fail_at_build_time():
    with pytest.raises(ValueError, match="register"):
        Encoder(D, depth=1, num_heads=H, varlen=True, num_registers=2)


@pytest.mark.parametrize(("kernel", "builder"), [("torch", "_local_blocks"), ("flex", "window_block_mask")])
@pytest.mark.parametrize("num_registers", [0, 2])
def test_encoder_builds_its_window_mask_once_per_forward(monkeypatch, kernel, builder, num_registers):
    """Every layer sees the same positions: the kernel's mask is built by the first and reused by the rest,
    and the result equals that of layers that each build their own."""
    from hepattn.models import kernels

    torch.manual_seed(0)
    x, valid = events([40, 25])
    enc = Encoder(D, depth=3, num_heads=H, kernel=kernel, window=8, wrap=True, num_registers=num_registers)
    enc = enc.eval().double() if kernel == "flex" else enc.eval()  # float64: eager flex, as the oracle
    x = x.double() if kernel == "flex" else x
    calls = []
    original = getattr(kernels, builder)

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(kernels, builder, counting)
    with torch.no_grad():
        out = enc(x, valid)
        assert len(calls) == 1
        h, h_valid = enc.registers.add(x, valid)  # the reference: each layer without a shared dict
        v_first = None
        for layer in enc.layers:
            h, v = layer(h, h_valid, v_first)
            v_first = v if v_first is None else v_first
    assert len(calls) == 4
    expected = enc.out_norm(enc.registers.drop(h))
    torch.testing.assert_close(out[valid], expected[valid])
