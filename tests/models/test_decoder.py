import pytest
import torch

from hepattn.models.decoder import (
    Decoder,
    DecoderLayer,
    DynamicQueries,
    LearnedQueries,
    SampledQueries,
    attention_mask,
)

D, H = 32, 4


def test_attention_mask_keeps_positive_logits_and_opens_empty_rows():
    logits = torch.tensor([[[1.0, -1.0, 2.0], [-1.0, -1.0, -1.0], [-1.0, -1.0, 3.0]]])
    x_valid = torch.tensor([[True, True, False]])
    keep = attention_mask(logits, x_valid)
    # query 0 keeps hit 0 (hit 2 is padding); query 1 keeps nothing -> attends to all;
    # query 2 keeps only a padded hit -> empty after padding -> attends to all
    assert keep.tolist() == [[[True, False, False], [True, True, True], [True, True, True]]]


def test_masked_query_ignores_constituents_outside_its_mask():
    torch.manual_seed(0)
    layer = DecoderLayer(D, H).eval()
    q, x = torch.randn(1, 3, D), torch.randn(1, 10, D)
    attn_valid = torch.zeros(1, 3, 10, dtype=torch.bool)
    attn_valid[0, 0, :5] = True  # query 0 sees hits 0-4
    attn_valid[0, 1:, :] = True
    x2 = x.clone()
    x2[0, 7] += 3.0  # a hit outside query 0's mask
    out, out2 = layer(q, x, attn_valid=attn_valid), layer(q, x2, attn_valid=attn_valid)
    # query 0 only changes through self-attention with the other queries; cut that by looking at a
    # one-query decoder
    assert not torch.allclose(out[0, 1], out2[0, 1])
    layer1 = DecoderLayer(D, H).eval()
    a, b = (
        layer1(q[:, :1], x, attn_valid=attn_valid[:, :1]),
        layer1(q[:, :1], x2, attn_valid=attn_valid[:, :1]),
    )
    torch.testing.assert_close(a, b)


def test_decoder_returns_every_layer_state():
    torch.manual_seed(0)
    dec = Decoder(D, depth=3, num_heads=H, mask_attention=False)
    outputs = dec(torch.randn(2, 5, D), torch.randn(2, 9, D))
    assert len(outputs) == 3
    assert all(s.shape == (2, 5, D) and logits is None for s, logits in outputs)
    assert not torch.allclose(outputs[0][0], outputs[-1][0])


def test_decoder_computes_each_states_mask_logits_once_and_attends_with_them():
    torch.manual_seed(0)
    dec = Decoder(D, depth=2, num_heads=H, mask_attention=True).eval()
    q, x = torch.randn(1, 4, D), torch.randn(1, 9, D)
    calls = []

    def mask_fn(q_):
        calls.append(q_)
        return torch.einsum("bqd,bnd->bqn", q_, x)

    outputs = dec(q, x, mask_fn=mask_fn)
    assert len(calls) == 3  # the initial queries, then each layer's output state: depth + 1
    torch.testing.assert_close(calls[0], dec.out_norm(q))
    for (state, logits), call in zip(outputs, calls[1:], strict=True):
        torch.testing.assert_close(state, call)
        torch.testing.assert_close(logits, mask_fn(state))
    # the reference: every layer attends where the previous state's logits are positive
    state = q
    for layer, (expected, _) in zip(dec.layers, outputs, strict=True):
        attn_valid = attention_mask(mask_fn(dec.out_norm(state)), None)
        state = layer(state, x, attn_valid=attn_valid)
        torch.testing.assert_close(dec.out_norm(state), expected)


def test_dynamic_queries_start_from_the_highest_scoring_valid_constituents():
    queries = DynamicQueries(num_queries=3, dim=D, seed_task="seed")
    x = torch.randn(2, 6, D)
    x_valid = torch.tensor([[True] * 6, [True, True, False, False, False, False]])
    score = torch.tensor([[0.0, 5.0, 1.0, 4.0, -1.0, 3.0], [2.0, 1.0, 9.0, 9.0, 9.0, 9.0]])
    q, q_valid, index = queries(x, x_valid, {"seed": {"logit": score}})
    assert index[0].tolist() == [1, 3, 5]
    assert index[1, :2].tolist() == [0, 1]  # padded constituents are never seeds
    assert q_valid.tolist() == [[True] * 3, [True, True, False]]
    torch.testing.assert_close(q[0, 0], queries.proj(x[0, 1]))


def test_learned_queries_are_shared_by_all_events():
    q, q_valid, index = LearnedQueries(4, D)(torch.randn(3, 7, D))
    assert q.shape == (3, 4, D) and q_valid.all() and index is None
    torch.testing.assert_close(q[0], q[2])


def test_identity_initialised_dynamic_queries_start_as_their_seeds():
    torch.manual_seed(0)
    x = torch.randn(2, 10, 8)
    scores = {"seed": {"logit": torch.randn(2, 10)}}
    q, _, index = DynamicQueries(3, 8, "seed", identity_init=True)(x, None, scores)
    torch.testing.assert_close(q, x.gather(1, index.unsqueeze(-1).expand(-1, -1, 8)))


def test_teacher_forced_queries_take_the_true_seeds_in_training_only():
    torch.manual_seed(0)
    x = torch.randn(1, 10, 8)
    logit = torch.arange(10.0).unsqueeze(0)  # the head prefers constituents 9, 8, 7, ...
    batch = {"hit_seed": torch.zeros(1, 10, dtype=torch.bool)}
    batch["hit_seed"][0, [1, 4]] = True
    queries = DynamicQueries(3, 8, "seed", teacher_field="hit_seed")
    _, _, index = queries.train()(x, None, {"seed": {"logit": logit}}, batch)
    assert sorted(index[0].tolist()) == [1, 4, 9]  # both true seeds, then the head's best
    _, _, index = queries.eval()(x, None, {"seed": {"logit": logit}}, batch)
    assert sorted(index[0].tolist()) == [7, 8, 9]


def test_sampled_queries_seed_every_constituent_in_evaluation_and_distinct_valid_ones_in_training():
    torch.manual_seed(0)
    x = torch.randn(2, 12, D)
    x_valid = torch.ones(2, 12, dtype=torch.bool)
    x_valid[1, 7:] = False
    queries = SampledQueries(num_queries=5, dim=D)
    q, q_valid, index = queries.eval()(x, x_valid)
    assert index.tolist() == [list(range(12))] * 2
    assert q_valid.tolist() == x_valid.tolist()
    torch.testing.assert_close(q, x)  # identity-initialised: each query starts as its seed
    q, q_valid, index = queries.train()(x, x_valid)
    assert q.shape == (2, 5, D) and q_valid.all()
    for row in index.tolist():
        assert len(set(row)) == 5  # no constituent seeds two queries
    assert (index[1] < 7).all()  # padded constituents are never seeds


def test_sampled_queries_cover_all_constituents_over_training_steps():
    torch.manual_seed(0)
    queries = SampledQueries(num_queries=3, dim=D).train()
    seen = set()
    for _ in range(50):
        seen |= set(queries(torch.randn(1, 10, D), None)[2][0].tolist())
    assert seen == set(range(10))


def test_weighted_sampled_queries_draw_seeds_in_proportion_to_their_weights():
    torch.manual_seed(0)
    weight = torch.ones(1, 100)
    weight[0, :10] = 20.0  # 10 heavy constituents: 200 of the 290 units of weight
    x_valid = torch.ones(1, 100, dtype=torch.bool)
    x_valid[0, 90:] = False
    queries = SampledQueries(num_queries=10, dim=D, weight_field="hit_seed_weight").train()
    heavy = 0
    for _ in range(200):
        index = queries(torch.randn(1, 100, D), x_valid, batch={"hit_seed_weight": weight})[2][0]
        assert len(set(index.tolist())) == 10 and (index < 90).all()  # distinct, never padding
        heavy += int((index < 10).sum())
    # uniform sampling would give 10/90 of the seeds to them; by weight most of them are heavy
    assert heavy / 2000 > 0.5
    queries.eval()
    assert queries(torch.randn(1, 100, D), x_valid)[2].shape == (1, 100)  # inference: every constituent


def test_weighted_sampled_queries_name_the_missing_weight_field():
    queries = SampledQueries(num_queries=3, dim=D, weight_field="hit_seed_weight").train()
    with pytest.raises(KeyError, match="hit_seed_weight"):
        queries(torch.randn(1, 10, D), None, batch={})


def test_sampled_queries_with_a_seed_field_seed_only_the_flagged_valid_constituents_in_evaluation():
    torch.manual_seed(0)
    x = torch.randn(2, 8, D)
    x_valid = torch.ones(2, 8, dtype=torch.bool)
    x_valid[1, 6:] = False
    flag = torch.tensor([[1, 0, 1, 0, 0, 1, 1, 0], [0, 1, 1, 0, 0, 0, 1, 1]], dtype=torch.bool)
    queries = SampledQueries(num_queries=3, dim=D, seed_field="hit_seed_ok").eval()
    q, q_valid, index = queries(x, x_valid, batch={"hit_seed_ok": flag})
    assert index[0].tolist() == [0, 2, 5, 6] and q_valid[0].all()  # the four flags, in order
    assert index[1, :2].tolist() == [1, 2] and q_valid[1].tolist() == [True, True, False, False]
    torch.testing.assert_close(q[0], x[0, [0, 2, 5, 6]])  # each query starts as its seed
    assert queries.train()(x, x_valid)[2].shape == (2, 3)  # training samples as before, flags unread
    with pytest.raises(KeyError, match="hit_seed_ok"):
        queries.eval()(x, x_valid, batch={})
