"""Several constituent types: joined into one sorted sequence for the model, split back for the tasks."""

import pytest
import torch

from hepattn.data.batch import collate
from hepattn.models.constituents import gather_rows, layout, restore_order, sort_order
from hepattn.models.criterion import SetCriterion
from hepattn.models.decoder import Decoder, DynamicQueries, SampledQueries
from hepattn.models.embed import InputNet
from hepattn.models.encoder import Encoder
from hepattn.models.maskformer import MaskFormer
from hepattn.models.matcher import HungarianMatcher
from hepattn.models.tasks.classify import ObjectValidTask
from hepattn.models.tasks.filter import ConstituentClassificationTask
from hepattn.models.tasks.mask import ObjectMaskTask

D = 16


def two_type_event(g: torch.Generator, n_pix: int, n_strip: int, n_obj: int) -> dict[str, torch.Tensor]:
    owner_pix = torch.randint(-1, n_obj, (n_pix,), generator=g)
    owner_strip = torch.randint(-1, n_obj, (n_strip,), generator=g)
    objects = torch.arange(n_obj).unsqueeze(1)
    return {
        "pix_x": torch.randn(n_pix, generator=g),
        "pix_phi": (torch.rand(n_pix, generator=g) * 2 - 1) * torch.pi,
        "pix_valid": torch.ones(n_pix, dtype=torch.bool),
        "pix_seed": torch.rand(n_pix, generator=g) < 0.3,
        "strip_r": torch.rand(n_strip, generator=g),
        "strip_e": torch.rand(n_strip, generator=g),
        "strip_phi": (torch.rand(n_strip, generator=g) * 2 - 1) * torch.pi,
        "strip_valid": torch.ones(n_strip, dtype=torch.bool),
        "obj_valid": torch.ones(n_obj, dtype=torch.bool),
        "obj_pix_valid": owner_pix.unsqueeze(0) == objects,
        "obj_strip_valid": owner_strip.unsqueeze(0) == objects,
    }


def two_type_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return collate([two_type_event(g, 12, 9, 3), two_type_event(g, 7, 14, 2)])  # padding in both types


def two_type_model(joint_sort: bool = True, strip_mask: bool = True) -> MaskFormer:
    tasks = [
        ConstituentClassificationTask("pix_seed", D, input_name="pix", target_field="seed"),
        ConstituentClassificationTask("strip_score", D, input_name="strip", target_field="e"),
        ObjectValidTask("obj_valid", D, target_object="obj"),
        ObjectMaskTask("obj_pix", D, target_object="obj", input_name="pix"),
    ]
    if strip_mask:
        tasks.append(ObjectMaskTask("obj_strip", D, target_object="obj", input_name="strip"))
    return MaskFormer(
        input_nets=[
            InputNet("pix", ["x"], D, fourier_fields={"phi": 2 * torch.pi}, num_frequencies=2),
            InputNet("strip", ["r", "e"], D, fourier_fields={"phi": 2 * torch.pi}, num_frequencies=2),
        ],
        encoder=Encoder(D, depth=1, num_heads=2, window=6, wrap=True),
        decoder=Decoder(D, depth=2, num_heads=2, mask_attention=True),
        queries=DynamicQueries(4, D, seed_task="pix_seed"),
        tasks=tasks,
        joint_sort=joint_sort,
    )


def test_sort_then_restore_gives_the_input_order_and_padding_goes_last():
    g = torch.Generator().manual_seed(0)
    phi, x = torch.rand(2, 10, generator=g), torch.randn(2, 10, 3, generator=g)
    valid = torch.arange(10) < torch.tensor([[10], [6]])
    order = sort_order(phi, valid)
    assert torch.equal(restore_order(order.argsort(-1), gather_rows(x, order), 1), x)
    sorted_valid, sorted_phi = gather_rows(valid, order), gather_rows(phi, order)
    assert sorted_valid[1, :6].all() and not sorted_valid[1, 6:].any()
    assert (sorted_phi[1, 1:6] >= sorted_phi[1, :5]).all()


@pytest.mark.parametrize("joint_sort", [False, True])
def test_joined_sequence_is_sorted_with_padding_last_and_splits_back(joint_sort):
    batch = two_type_batch()
    joined, _ = layout(batch, ["pix", "strip"], "phi", joint_sort)
    valid = joined.join([batch["pix_valid"], batch["strip_valid"]])
    phi = joined.join([batch["pix_phi"], batch["strip_phi"]])
    types = joined.type_index
    for b, n_real in enumerate(valid.sum(1).tolist()):  # the real constituents are a prefix of the row
        assert valid[b, :n_real].all() and not valid[b, n_real:].any()
        real_phi, real_types = phi[b, :n_real], types[b, :n_real]
        if joint_sort:  # one phi order across the types
            assert (real_phi.diff() >= 0).all()
        else:  # the pixels' block, then the strips', each in phi order
            assert (real_types.diff() >= 0).all()
            for t in (0, 1):
                assert (real_phi[real_types == t].diff() >= 0).all()
    for name in ("pix", "strip"):
        assert torch.equal(joined.split(phi, 1, name), batch[f"{name}_phi"])
        assert torch.equal(joined.join_field(batch, name, f"{name}_phi")[joined.of_type(name)].sort().values,
                           batch[f"{name}_phi"].flatten().sort().values)  # fmt: skip


def test_each_task_sees_its_own_type_in_its_input_order():
    torch.manual_seed(0)
    batch = two_type_batch()
    model = two_type_model().eval()
    with torch.no_grad():
        out = model(batch)
    assert out["encoder"]["pix_seed"]["logit"].shape == batch["pix_valid"].shape
    assert out["encoder"]["strip_score"]["logit"].shape == batch["strip_valid"].shape
    assert out["layer_1"]["obj_pix"]["logit"].shape == (2, 4, batch["pix_valid"].shape[1])
    assert out["layer_1"]["obj_strip"]["logit"].shape == (2, 4, batch["strip_valid"].shape[1])
    index, q_valid = out["queries"]["index"], out["queries"]["valid"]
    assert batch["pix_valid"].gather(1, index)[q_valid].all()  # seeds are pixels, indexed among them
    # shuffling the strips (of the first event: the second is padded) permutes the strips' outputs the
    # same way and changes nothing else
    perm = torch.randperm(9)
    shuffled = dict(batch)
    for key in ("strip_r", "strip_e", "strip_phi"):
        shuffled[key] = batch[key].clone()
        shuffled[key][0, :9] = batch[key][0, perm]
    shuffled["obj_strip_valid"] = batch["obj_strip_valid"].clone()
    shuffled["obj_strip_valid"][0, :, :9] = batch["obj_strip_valid"][0, :, perm]
    with torch.no_grad():
        again = model(shuffled)
    strip_score, strip_mask = out["encoder"]["strip_score"]["logit"], out["layer_1"]["obj_strip"]["logit"]
    torch.testing.assert_close(again["encoder"]["strip_score"]["logit"][0, :9], strip_score[0, perm])
    torch.testing.assert_close(again["layer_1"]["obj_strip"]["logit"][0, :, :9], strip_mask[0, :, perm])
    pix_mask = out["layer_1"]["obj_pix"]["logit"]
    torch.testing.assert_close(again["layer_1"]["obj_pix"]["logit"], pix_mask)


def test_mask_attention_reads_the_union_of_the_masks_and_never_an_uncovered_type():
    torch.manual_seed(0)
    batch = two_type_batch()
    for strip_mask in (True, False):
        model = two_type_model(strip_mask=strip_mask).eval()
        x, x_valid, joined = model.embed(batch)
        mask_fn = model.mask_fn(model.encode(x, x_valid), joined)
        logits = mask_fn(torch.randn(2, 4, D))
        pix, strip = joined.of_type("pix").unsqueeze(1), joined.of_type("strip").unsqueeze(1)
        assert torch.isfinite(logits[pix.expand_as(logits)]).all()
        assert torch.isfinite(logits[strip.expand_as(logits)]).all() == strip_mask
        if not strip_mask:
            assert (logits[strip.expand_as(logits)] == float("-inf")).all()


def test_two_type_model_trains_end_to_end_and_the_type_embedding_learns():
    torch.manual_seed(0)
    batch = two_type_batch()
    model = two_type_model()
    criterion = SetCriterion(HungarianMatcher(), target_object="obj", input_name="pix")
    losses = criterion(model(batch), batch, model.tasks)
    assert {"layer_1/obj_pix/bce", "layer_1/obj_strip/dice", "encoder/strip_score/bce"} <= set(losses)
    losses["loss"].backward()
    assert model.type_embed.vectors.grad is not None and model.type_embed.vectors.grad.abs().sum() > 0


def test_wiring_errors_name_the_problem():
    nets = [InputNet("pix", ["x"], D), InputNet("strip", ["r"], D)]
    enc, dec = Encoder(D, depth=1, num_heads=2), Decoder(D, depth=1, num_heads=2)
    mask = ObjectMaskTask("m", D, target_object="obj", input_name="pix")
    with pytest.raises(ValueError, match="one input network per constituent type"):
        MaskFormer([InputNet("pix", ["x"], D), InputNet("pix", ["y"], D)], enc, [])
    with pytest.raises(ValueError, match="one width"):
        MaskFormer([InputNet("pix", ["x"], D), InputNet("strip", ["r"], 2 * D)], enc, [])
    with pytest.raises(ValueError, match="reads constituents 'hit'"):
        MaskFormer(nets, enc, [ConstituentClassificationTask("c", D, input_name="hit")])
    twin = ObjectMaskTask("m2", D, target_object="obj", input_name="pix")
    with pytest.raises(ValueError, match="at most one mask task per constituent type"):
        MaskFormer(nets, enc, [mask, twin], dec, SampledQueries(4, D, input_name="pix"))
    with pytest.raises(ValueError, match="must name the type they seed on"):
        MaskFormer(nets, enc, [mask], dec, SampledQueries(4, D))
    model = MaskFormer(nets, enc, [mask], dec, SampledQueries(4, D, input_name="pix"))
    batch = two_type_batch()
    del batch["strip_phi"]
    with pytest.raises(KeyError, match="strip_phi"):
        model(batch)
