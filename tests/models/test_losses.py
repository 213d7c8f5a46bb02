import pytest
import torch
import torch.nn.functional as F

from hepattn.models import losses

B, Q, T, N, NF = 2, 5, 4, 11, 3

# (aligned loss, pairwise cost, shared keyword arguments)
MASK_PAIRS = {
    "bce": (losses.mask_bce_loss, losses.mask_bce_cost, {}),
    "focal": (losses.mask_focal_loss, losses.mask_focal_cost, {}),
    "focal_alpha": (losses.mask_focal_loss, losses.mask_focal_cost, {"gamma": 1.5, "alpha": 0.25}),
    "dice": (losses.mask_dice_loss, losses.mask_dice_cost, {}),
}


def random_masks(seed: int = 0, num_queries: int = Q, num_targets: int = T):
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(B, num_queries, N, generator=generator)
    targets = torch.rand(B, num_targets, N, generator=generator) < 0.4
    valid = torch.ones(B, N, dtype=torch.bool)
    valid[0, -3:] = False  # padded constituents in the first event only
    return logits, targets, valid


@pytest.mark.parametrize("name", MASK_PAIRS)
def test_mask_cost_equals_the_aligned_loss_of_each_pair(name):
    loss_fn, cost_fn, kwargs = MASK_PAIRS[name]
    logits, targets, valid = random_masks()
    cost = cost_fn(logits, targets, valid, **kwargs)
    assert cost.shape == (B, Q, T)
    for b in range(B):
        for q in range(Q):
            for t in range(T):
                pair = loss_fn(logits[b, [q]][None], targets[b, [t]][None], valid[[b]], **kwargs)
                torch.testing.assert_close(cost[b, q, t], pair, atol=1e-5, rtol=1e-5)


def test_cross_entropy_cost_equals_the_aligned_loss_of_each_pair():
    generator = torch.Generator().manual_seed(12)
    logits, labels = torch.randn(B, Q, 6, generator=generator), torch.randint(6, (B, T), generator=generator)
    cost = losses.cross_entropy_cost(logits, labels)
    assert cost.shape == (B, Q, T)
    class_weights = torch.rand(6, generator=generator) + 0.1  # cancel out for a single pair
    for b in range(B):
        for q in range(Q):
            for t in range(T):
                pair = losses.cross_entropy_loss(logits[b, [q]], labels[b, [t]], class_weights)
                torch.testing.assert_close(cost[b, q, t], pair)


def test_cross_entropy_cost_takes_padded_targets_of_any_label_and_leaves_the_real_ones_alone():
    logits, labels = torch.randn(1, Q, 4), torch.tensor([[2, 0, 3]])
    padded = losses.cross_entropy_cost(logits, torch.tensor([[2, 0, 3, -1, -100]]))  # e.g. -1 padding
    assert padded.shape == (1, Q, 5)
    torch.testing.assert_close(padded[..., :3], losses.cross_entropy_cost(logits, labels))


def test_l1_cost_equals_the_aligned_loss_of_each_pair():
    generator = torch.Generator().manual_seed(1)
    pred, target = torch.randn(B, Q, NF, generator=generator), torch.randn(B, T, NF, generator=generator)
    cost = losses.l1_cost(pred, target)
    assert cost.shape == (B, Q, T)
    for b in range(B):
        for q in range(Q):
            for t in range(T):
                pair = losses.l1_loss(pred[b, [q]][None], target[b, [t]][None])
                torch.testing.assert_close(cost[b, q, t], pair)


@pytest.mark.parametrize("name", MASK_PAIRS)
def test_a_perfect_mask_prediction_has_near_zero_loss_and_the_lowest_cost_on_the_diagonal(name):
    loss_fn, cost_fn, kwargs = MASK_PAIRS[name]
    _, targets, valid = random_masks(seed=2, num_queries=T)
    logits = 20.0 * (2 * targets.float() - 1)
    assert loss_fn(logits, targets, valid, **kwargs).item() < 1e-4
    cost = cost_fn(logits, targets, valid, **kwargs)
    assert torch.equal(cost.argmin(-1), torch.arange(T).expand(B, T))


def test_a_perfect_regression_has_zero_loss_and_the_lowest_cost_on_the_diagonal():
    target = torch.randn(B, T, NF, generator=torch.Generator().manual_seed(3))
    assert losses.l1_loss(target.clone(), target).item() == 0.0
    assert torch.equal(losses.l1_cost(target.clone(), target).argmin(-1), torch.arange(T).expand(B, T))


ALIGNED = {
    "mask_bce": lambda x, t, v, qv: losses.mask_bce_loss(x, t, v, qv),
    "mask_focal": lambda x, t, v, qv: losses.mask_focal_loss(x, t, v, qv, alpha=0.25),
    "mask_dice": lambda x, t, v, qv: losses.mask_dice_loss(x, t, v, qv),
    "l1": lambda x, t, v, qv: losses.l1_loss(x, t.float(), qv),
}


@pytest.mark.parametrize("name", ALIGNED)
def test_no_contributing_query_gives_a_finite_zero_with_a_gradient(name):
    logits, targets, valid = random_masks(seed=4, num_queries=T)
    logits.requires_grad_(True)
    loss = ALIGNED[name](logits, targets, valid, torch.zeros(B, T, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("name", ["mask_bce", "mask_focal", "mask_dice"])
def test_only_selected_queries_contribute(name):
    logits, targets, valid = random_masks(seed=5, num_queries=T)
    query_valid = torch.tensor([[True, False, True, False], [False, False, False, True]])
    junk = torch.where(query_valid[..., None], logits, -logits + 7.0)
    loss_fn = ALIGNED[name]
    torch.testing.assert_close(
        loss_fn(junk, targets, valid, query_valid), loss_fn(logits, targets, valid, query_valid)
    )


def append_padding(logits, targets, valid, extra: int = 6):
    """Append `extra` constituents of random junk marked invalid."""
    generator = torch.Generator().manual_seed(99)
    junk_logits = 50 * torch.randn(*logits.shape[:2], extra, generator=generator)
    junk_logits[..., 0] = float("nan")
    junk_targets = torch.rand(*targets.shape[:2], extra, generator=generator) < 0.5
    pad = torch.zeros(valid.shape[0], extra, dtype=torch.bool)
    return (
        torch.cat([logits, junk_logits], -1),
        torch.cat([targets, junk_targets], -1),
        torch.cat([valid, pad], -1),
    )


@pytest.mark.parametrize("name", MASK_PAIRS)
def test_padded_constituents_change_neither_loss_nor_cost(name):
    loss_fn, cost_fn, kwargs = MASK_PAIRS[name]
    logits, targets, valid = random_masks(seed=6, num_queries=T)
    padded = append_padding(logits, targets, valid)
    torch.testing.assert_close(loss_fn(*padded, **kwargs), loss_fn(logits, targets, valid, **kwargs))
    torch.testing.assert_close(cost_fn(*padded, **kwargs), cost_fn(logits, targets, valid, **kwargs))


@pytest.mark.parametrize("loss_fn", [losses.bce_loss, losses.focal_loss])
def test_padded_entries_do_not_change_per_element_losses(loss_fn):
    logits, targets, valid = random_masks(seed=7)
    x, t = logits[:, 0], targets[:, 0]  # (B, N), like a constituent filter
    padded_x, padded_t, padded_valid = append_padding(x[:, None], t[:, None], valid)
    torch.testing.assert_close(loss_fn(padded_x[:, 0], padded_t[:, 0], padded_valid), loss_fn(x, t, valid))


def test_mask_bce_loss_is_the_valid_mean_of_torch_bce():
    logits, targets, valid = random_masks(seed=8, num_queries=T)
    elementwise = F.binary_cross_entropy_with_logits(logits, targets.float(), reduction="none")
    per_query = (elementwise * valid[:, None]).sum(-1) / valid.sum(-1, keepdim=True)
    torch.testing.assert_close(losses.mask_bce_loss(logits, targets, valid), per_query.mean())


def test_focal_loss_matches_its_textbook_formula():
    logits, targets, valid = random_masks(seed=9, num_queries=T)
    gamma, alpha = 2.0, 0.25
    p = logits.sigmoid()
    t = targets.float()
    p_t = t * p + (1 - t) * (1 - p)
    alpha_t = t * alpha + (1 - t) * (1 - alpha)
    expected = -alpha_t * (1 - p_t) ** gamma * p_t.log()
    mask = valid[:, None].expand_as(logits)
    torch.testing.assert_close(
        losses.focal_loss(logits, targets, mask, gamma, alpha), expected[mask].mean(), rtol=1e-4, atol=1e-6
    )


def test_focal_loss_without_focusing_or_balancing_is_bce():
    logits, targets, valid = random_masks(seed=10, num_queries=T)
    mask = valid[:, None].expand_as(logits)
    torch.testing.assert_close(
        losses.focal_loss(logits, targets, mask, gamma=0.0), losses.bce_loss(logits, targets, mask)
    )


def test_pos_weight_scales_only_the_positive_term():
    logits, targets, _ = random_masks(seed=11, num_queries=T)
    pos = losses.bce_loss(logits, targets, targets)
    neg = losses.bce_loss(logits, targets, ~targets)
    torch.testing.assert_close(losses.bce_loss(logits, targets, targets, pos_weight=3.0), 3 * pos)
    torch.testing.assert_close(losses.bce_loss(logits, targets, ~targets, pos_weight=3.0), neg)


def test_cross_entropy_loss_is_torch_weighted_cross_entropy():
    generator = torch.Generator().manual_seed(13)
    logits, labels = torch.randn(9, 4, generator=generator), torch.randint(4, (9,), generator=generator)
    class_weights = torch.tensor([0.5, 1.0, 2.0, 3.0])
    expected = F.cross_entropy(logits, labels, class_weights)
    torch.testing.assert_close(losses.cross_entropy_loss(logits, labels, class_weights), expected)


def test_per_element_losses_with_nothing_valid_are_a_zero_with_a_gradient():
    logits = torch.randn(B, N, requires_grad=True)
    targets = torch.zeros(B, N, dtype=torch.bool)
    none = torch.zeros(B, N, dtype=torch.bool)
    loss = losses.bce_loss(logits, targets, none) + losses.focal_loss(logits, targets, none)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_cross_entropy_of_no_matched_query_is_a_zero_with_a_gradient():
    logits = torch.randn(0, 4, requires_grad=True)
    loss = losses.cross_entropy_loss(logits, torch.zeros(0, dtype=torch.long), torch.ones(4))
    loss.backward()
    assert loss.item() == 0.0
    assert logits.grad.shape == (0, 4)


def reference_mask_loss(name: str, logits, targets, valid, query_valid):
    """The mask losses as plain autograd formulas: the reference for the hand-written gradients."""
    v, t = valid[:, None], targets.to(logits.dtype)
    if name == "bce":
        per_query = torch.where(v, F.softplus(logits) - logits * t, 0.0).sum(-1) / v.sum(-1)
    else:
        p, t = torch.where(v, logits.sigmoid(), 0.0), torch.where(v, t, 0.0)
        per_query = 1 - (2 * (p * t).sum(-1) + 1) / (p.sum(-1) + t.sum(-1) + 1)
    return torch.where(query_valid, per_query, 0.0).sum() / query_valid.sum()


HAND_WRITTEN = {"bce": losses.mask_bce_loss, "dice": losses.mask_dice_loss}


@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_hand_written_mask_loss_gradients_equal_autograd_of_the_formula(name):
    logits, targets, valid = random_masks(seed=8, num_targets=Q)
    logits = logits.double()
    query_valid = torch.rand(B, Q, generator=torch.Generator().manual_seed(8)) < 0.6
    query_valid[0, 0] = True
    ours, ref = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    value = HAND_WRITTEN[name](ours, targets, valid, query_valid)
    expected = reference_mask_loss(name, ref, targets, valid, query_valid)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)
    value.backward()
    expected.backward()
    torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-10, atol=1e-15)
    soft = torch.rand(targets.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    inputs = (logits.clone().requires_grad_(), soft, valid, query_valid)  # soft targets too
    assert torch.autograd.gradcheck(HAND_WRITTEN[name], inputs)


@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_mask_loss_keeps_no_float32_copy_for_backward(name):
    """What autograd keeps of the (B, Q, N) tensors is the bf16 logits and the bool targets, nothing else:
    at 2,000 queries and 10k hits each float32 copy would be 76 MiB per decoder layer."""
    logits, targets, valid = random_masks(seed=10, num_targets=Q)
    logits = logits.bfloat16().requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        HAND_WRITTEN[name](logits, targets, valid, None).backward()
    assert [t.dtype for t in saved if t.shape == (B, Q, N)] == [torch.bfloat16, torch.bool]
    assert logits.grad.dtype == torch.bfloat16 and logits.grad.abs().sum() > 0


def test_the_gaussian_nll_of_a_diagonal_covariance_is_the_sum_over_fields():
    residual = torch.tensor([[[0.3, -1.2]]], dtype=torch.float64)
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float64)
    cov = torch.diag(sigma**2)[None, None]
    expected = (0.5 * (residual / sigma) ** 2 + sigma.log()).sum()
    assert torch.isclose(losses.gaussian_nll_loss(residual, cov), expected)
