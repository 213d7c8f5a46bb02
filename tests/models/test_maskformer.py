import pytest
import torch

from hepattn.data.batch import collate
from hepattn.models.criterion import SetCriterion
from hepattn.models.decoder import Decoder, DynamicQueries, LearnedQueries, SampledQueries
from hepattn.models.embed import InputNet
from hepattn.models.encoder import Encoder
from hepattn.models.maskformer import MaskFormer, ScaleGradient
from hepattn.models.matcher import HungarianMatcher
from hepattn.models.tasks.classify import ObjectClassificationTask, ObjectValidTask
from hepattn.models.tasks.filter import ConstituentClassificationTask
from hepattn.models.tasks.mask import ObjectMaskTask
from hepattn.models.tasks.regress import ObjectRegressionTask

D = 32


def random_event(g, n_hits, n_particles):
    owner = torch.randint(-1, n_particles, (n_hits,), generator=g)
    seed = torch.zeros(n_hits, dtype=torch.bool)
    for p in range(n_particles):
        hits = (owner == p).nonzero()
        if len(hits):
            seed[hits[0]] = True
    return {
        "hit_x": torch.randn(n_hits, generator=g),
        "hit_phi": (torch.rand(n_hits, generator=g) * 2 - 1) * torch.pi,
        "hit_valid": torch.ones(n_hits, dtype=torch.bool),
        "hit_on_target": owner >= 0,
        "hit_seed": seed,
        "particle_valid": torch.ones(n_particles, dtype=torch.bool),
        "particle_hit_valid": owner.unsqueeze(0) == torch.arange(n_particles).unsqueeze(1),
        "particle_pt": torch.rand(n_particles, generator=g) * 10 + 1,
        "particle_eta": torch.randn(n_particles, generator=g),
        "particle_charge": torch.randint(0, 2, (n_particles,), generator=g),
    }


def make_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return collate([random_event(g, 40, 5), random_event(g, 25, 3)])


def make_model(dynamic=True, mask_attention=True, decoder=True, varlen=False):
    tasks = [
        ConstituentClassificationTask("hit_filter", D, target_field="on_target"),
        ConstituentClassificationTask("hit_seed", D, target_field="seed"),
    ]
    if decoder:
        tasks += [
            ObjectValidTask("track_valid", D),
            ObjectMaskTask(
                "track_hit",
                D,
                similarity="distance",
                losses={"bce": 1.0, "dice": 1.0, "focal": 1.0},
                quality_weight=1.0,
            ),
            ObjectRegressionTask("track_params", D, fields=["pt", "eta"], log_fields=["pt"], cost_weight=0.1),
            ObjectClassificationTask("track_charge", D, num_classes=2, field="charge"),
        ]
    queries = DynamicQueries(8, D, seed_task="hit_seed") if dynamic else LearnedQueries(8, D)
    return MaskFormer(
        input_nets=[
            InputNet("hit", ["x", "phi"], D, fourier_fields={"phi": 2 * torch.pi}, num_frequencies=4)
        ],
        encoder=Encoder(D, depth=2, num_heads=4, window=8, wrap=True, varlen=varlen),
        decoder=Decoder(D, depth=2, num_heads=4, mask_attention=mask_attention) if decoder else None,
        queries=queries if decoder else None,
        tasks=tasks,
    )


def test_output_structure_and_shapes():
    torch.manual_seed(0)
    batch = make_batch()
    out = make_model()(batch)
    assert set(out) == {"encoder", "queries", "layer_0", "layer_1"}
    assert out["encoder"]["hit_filter"]["logit"].shape == (2, 40)
    assert out["layer_1"]["track_valid"]["logit"].shape == (2, 8)
    assert out["layer_1"]["track_hit"]["logit"].shape == (2, 8, 40)
    for layer in ("layer_0", "layer_1"):  # the decoder's mask logits are reused, the quality is added
        assert out[layer]["track_hit"]["quality_logit"].shape == (2, 8)
    assert out["layer_1"]["track_params"]["value"].shape == (2, 8, 2)
    assert out["layer_1"]["track_charge"]["logits"].shape == (2, 8, 2)
    assert out["queries"]["valid"].shape == (2, 8)


@pytest.mark.parametrize("dynamic", [True, False])
def test_gradients_reach_every_parameter(dynamic):
    torch.manual_seed(0)
    batch = make_batch()
    model = make_model(dynamic=dynamic)
    losses = SetCriterion(HungarianMatcher())(model(batch), batch, model.tasks)
    losses["loss"].backward()
    unused = {"queries.queries"} if dynamic else {"queries.proj.weight", "queries.proj.bias"}
    for name, p in model.named_parameters():
        if name in unused:
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_loss_names_cover_every_layer_and_task():
    torch.manual_seed(0)
    batch = make_batch()
    model = make_model()
    losses = SetCriterion(HungarianMatcher())(model(batch), batch, model.tasks)
    assert "encoder/hit_filter/bce" in losses and "encoder/hit_seed/bce" in losses
    for layer in ("layer_0", "layer_1"):
        for name in (
            "track_valid/bce",
            "track_hit/bce",
            "track_hit/dice",
            "track_hit/focal",
            "track_hit/quality",
            "track_params/l1",
        ):
            assert f"{layer}/{name}" in losses
    only_last = SetCriterion(HungarianMatcher(), aux_loss=False)(model(batch), batch, model.tasks)
    assert not any(k.startswith("layer_0") for k in only_last)
    total = sum(v for k, v in losses.items() if k != "loss")
    torch.testing.assert_close(losses["loss"], total)


def test_inference_without_auxiliary_heads_predicts_the_same():
    torch.manual_seed(0)
    batch = make_batch()
    model = make_model().eval()
    with torch.no_grad():
        full, last_only = model(batch), model(batch, aux_heads=False)
    assert set(last_only) == {"encoder", "queries", "layer_1"}
    torch.testing.assert_close(model.predict(last_only), model.predict(full), rtol=0, atol=0)


def shuffle_hits(batch: dict, g: torch.Generator) -> tuple[dict, torch.Tensor]:
    """The batch with each event's real hits in a random order, and that order (B, N)."""
    N = batch["hit_valid"].shape[1]
    lengths = batch["hit_valid"].sum(1).tolist()
    order = torch.stack([torch.cat([torch.randperm(n, generator=g), torch.arange(n, N)]) for n in lengths])
    shuffled = {k: v.gather(1, order) if k.startswith("hit_") else v for k, v in batch.items()}
    targets = batch["particle_hit_valid"]
    shuffled["particle_hit_valid"] = targets.gather(2, order[:, None].expand_as(targets))
    return shuffled, order


def test_outputs_follow_the_hits_whatever_their_input_order():
    """Shuffled hits give the same outputs, exactly, in the shuffled order.

    The model works on the hits in phi order, which is the same whatever order they come in.
    """
    torch.manual_seed(0)
    batch = make_batch()
    model = make_model().eval()
    shuffled, order = shuffle_hits(batch, torch.Generator().manual_seed(3))
    with torch.no_grad():
        out, out_shuffled = model(batch), model(shuffled)
    assert torch.equal(
        out_shuffled["encoder"]["hit_seed"]["logit"], out["encoder"]["hit_seed"]["logit"].gather(1, order)
    )
    logits = out["layer_1"]["track_hit"]["logit"]
    assert torch.equal(
        out_shuffled["layer_1"]["track_hit"]["logit"], logits.gather(2, order[:, None].expand_as(logits))
    )
    assert torch.equal(
        out_shuffled["layer_1"]["track_valid"]["logit"], out["layer_1"]["track_valid"]["logit"]
    )
    index = out["queries"]["index"]  # the same seed hits, at their shuffled positions
    assert torch.equal(order.gather(1, out_shuffled["queries"]["index"]), index)
    phi = batch["hit_phi"].gather(1, index)  # the queries are in phi order, like the hits they attend
    valid = out["queries"]["valid"]
    assert (phi.diff(dim=1)[valid[:, 1:]] > 0).all()


def test_a_packed_encoder_gives_the_padded_outputs():
    """With ``varlen`` the events of a batch (40 and 25 hits) go through the encoder back to back."""
    torch.manual_seed(0)
    batch = make_batch()
    padded = make_model().eval()
    packed = make_model(varlen=True).eval()
    packed.load_state_dict(padded.state_dict())
    shapes = []
    packed.encoder.register_forward_hook(lambda module, args, output: shapes.append(tuple(output.shape)))
    with torch.no_grad():
        expected, out = padded(batch), packed(batch)
    assert shapes == [(1, 40 + 25, D)]  # one sequence of the real hits, no padding
    valid = batch["hit_valid"]
    logit = out["encoder"]["hit_seed"]["logit"]
    torch.testing.assert_close(logit[valid], expected["encoder"]["hit_seed"]["logit"][valid])
    assert torch.equal(out["queries"]["index"], expected["queries"]["index"])
    masks = out["layer_1"]["track_hit"]["logit"].transpose(1, 2)[valid]  # (valid hits, Q)
    torch.testing.assert_close(masks, expected["layer_1"]["track_hit"]["logit"].transpose(1, 2)[valid])
    torch.testing.assert_close(
        out["layer_1"]["track_valid"]["logit"], expected["layer_1"]["track_valid"]["logit"]
    )


def test_encoder_only_model_is_a_filter():
    batch = make_batch()
    model = make_model(decoder=False)
    out = model(batch)
    assert set(out) == {"encoder"}
    preds = model.predict(out)
    assert preds["hit_filter"]["keep"].shape == (2, 40)


def test_predictions_have_physical_units():
    torch.manual_seed(0)
    model = make_model()
    preds = model.predict(model(make_batch()))
    assert (preds["track_params"]["pt"] > 0).all()  # pT is regressed in log space
    assert preds["track_hit"]["mask"].dtype == torch.bool
    assert ((preds["track_hit"]["quality"] >= 0) & (preds["track_hit"]["quality"] <= 1)).all()


def test_wiring_errors_are_caught_at_build_time():
    net = [InputNet("hit", ["x"], D)]
    enc = Encoder(D, depth=1, num_heads=4)
    with pytest.raises(ValueError, match="mask attention"):
        MaskFormer(net, enc, [ObjectValidTask("v", D)], Decoder(D, 1, 4), LearnedQueries(4, D))
    with pytest.raises(ValueError, match="queries"):
        MaskFormer(net, enc, [ObjectValidTask("v", D)], Decoder(D, 1, 4, mask_attention=False))
    with pytest.raises(ValueError, match="unique"):
        MaskFormer(net, enc, [ObjectValidTask("v", D), ObjectValidTask("v", D)])
    with pytest.raises(KeyError, match="hit_energy"):
        InputNet("hit", ["energy"], D)(make_batch())


def test_constituent_type_errors_are_caught_at_build_time():
    enc, dec = Encoder(D, depth=1, num_heads=4), Decoder(D, 1, 4)
    pixel, strip = InputNet("pixel", ["x"], D), InputNet("strip", ["x"], D)
    mask = ObjectMaskTask  # its input_name is the type its mask covers
    with pytest.raises(ValueError, match="one input network per constituent type"):
        MaskFormer([pixel, InputNet("pixel", ["y"], D)], enc, [ConstituentClassificationTask("f", D)])
    with pytest.raises(ValueError, match="one width"):
        MaskFormer([pixel, InputNet("strip", ["x"], 2 * D)], enc, [ConstituentClassificationTask("f", D)])
    with pytest.raises(ValueError, match="'hit'"):  # a task on a type the model has no network for
        MaskFormer([pixel, strip], enc, [ConstituentClassificationTask("f", D)])
    with pytest.raises(ValueError, match="at most one mask task per constituent type"):
        MaskFormer(
            [pixel, strip], enc, [mask("a", D, input_name="pixel"), mask("b", D, input_name="pixel")],
            dec, LearnedQueries(4, D),
        )  # fmt: skip
    with pytest.raises(ValueError, match="must name the type they seed on"):
        MaskFormer([pixel, strip], enc, [mask("a", D, input_name="pixel")], dec, SampledQueries(4, D))


def test_scale_gradient_is_the_identity_forward_and_scales_the_gradient():
    x = torch.randn(3, 4, requires_grad=True)
    y = ScaleGradient(0.1)(x)
    torch.testing.assert_close(y, x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 0.1))
