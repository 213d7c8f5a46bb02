import itertools

import numpy as np
import pytest
import torch

from hepattn.models import matcher as matcher_module
from hepattn.models.matcher import HungarianMatcher

needs_lap = pytest.mark.skipif(matcher_module.lap is None, reason="lapx is not installed")
SOLVERS = ["scipy", pytest.param("lap", marks=needs_lap)]


def total_cost(cost: torch.Tensor, query_to_target: torch.Tensor) -> float:
    """Sum of cost[q, t] over matched pairs of one event."""
    queries = torch.nonzero(query_to_target >= 0).squeeze(-1)
    return cost[queries, query_to_target[queries]].sum().item()


def random_valid(batch: int, size: int, generator: torch.Generator, min_valid: int = 0) -> torch.Tensor:
    valid = torch.rand(batch, size, generator=generator) < 0.7
    valid[:, :min_valid] = True
    return valid


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_recovers_a_shuffled_perfect_prediction(solver, noise):
    generator = torch.Generator().manual_seed(0)
    batch, num = 4, 12
    perms = torch.stack([torch.randperm(num, generator=generator) for _ in range(batch)])
    cost = 1 - torch.nn.functional.one_hot(perms, num).float()
    cost += noise * torch.rand(cost.shape, generator=generator)  # noise < 1 keeps the permutation optimal
    target_valid = torch.ones(batch, num, dtype=torch.bool)
    query_to_target = HungarianMatcher(solver)(cost, None, target_valid)
    assert torch.equal(query_to_target, perms)


@pytest.mark.parametrize("solver", SOLVERS)
def test_batched_matching_equals_per_sample_matching(solver):
    generator = torch.Generator().manual_seed(1)
    batch, num_queries, num_targets = 6, 10, 7
    cost = torch.randn(batch, num_queries, num_targets, generator=generator)
    query_valid = random_valid(batch, num_queries, generator, min_valid=num_targets)
    target_valid = random_valid(batch, num_targets, generator)
    matcher = HungarianMatcher(solver)
    batched = matcher(cost, query_valid, target_valid)
    singles = [matcher(cost[[i]], query_valid[[i]], target_valid[[i]]) for i in range(batch)]
    assert torch.equal(batched, torch.cat(singles))


@pytest.mark.parametrize("solver", SOLVERS)
def test_rows_solved_in_threads_equal_rows_solved_one_by_one(solver):
    """Nine 40 x 30 problems, as the nine decoder layers of a training step hand them over at once."""
    generator = torch.Generator().manual_seed(4)
    cost = torch.rand(9, 40, 30, generator=generator)
    target_valid = random_valid(9, 30, generator)
    serial = HungarianMatcher(solver, workers=1)(cost, None, target_valid)
    threaded = HungarianMatcher(solver, workers=4)(cost, None, target_valid)
    assert torch.equal(threaded, serial)
    assert (serial >= 0).sum() == target_valid.sum()


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        HungarianMatcher(workers=0)


def test_output_is_long_on_the_cost_device_with_one_row_per_query():
    cost = torch.rand(2, 5, 3)
    query_to_target = HungarianMatcher()(cost, None, torch.ones(2, 3, dtype=torch.bool))
    assert query_to_target.dtype == torch.long
    assert query_to_target.device == cost.device
    assert query_to_target.shape == (2, 5)


@pytest.mark.parametrize("num_targets", [0, 4])
def test_no_valid_targets_leaves_every_query_unmatched(num_targets):
    cost = torch.rand(3, 5, num_targets)
    target_valid = torch.zeros(3, num_targets, dtype=torch.bool)
    query_to_target = HungarianMatcher()(cost, None, target_valid)
    assert torch.equal(query_to_target, torch.full((3, 5), -1))


def test_more_valid_targets_than_valid_queries_raises():
    cost = torch.rand(2, 5, 4)
    query_valid = torch.tensor([[True] * 5, [True, True, True, False, False]])
    target_valid = torch.ones(2, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="Batch element 1 has 4 valid targets but only 3 valid queries"):
        HungarianMatcher()(cost, query_valid, target_valid)


@pytest.mark.parametrize("solver", SOLVERS)
def test_each_valid_target_gets_one_valid_query_and_invalid_ones_never_match(solver):
    generator = torch.Generator().manual_seed(2)
    batch, num_queries, num_targets = 8, 9, 6
    # Invalid entries are the cheapest, so a matcher that ignored the masks would pick them.
    cost = torch.rand(batch, num_queries, num_targets, generator=generator)
    query_valid = random_valid(batch, num_queries, generator, min_valid=num_targets)
    target_valid = random_valid(batch, num_targets, generator)
    cost[~query_valid] = -10.0
    cost.transpose(1, 2)[~target_valid] = -10.0
    query_to_target = HungarianMatcher(solver)(cost, query_valid, target_valid)
    for b in range(batch):
        matched = query_to_target[b] >= 0
        assert not (matched & ~query_valid[b]).any()
        matched_targets = sorted(query_to_target[b][matched].tolist())
        assert matched_targets == torch.nonzero(target_valid[b]).squeeze(-1).tolist()


@needs_lap
def test_lap_and_scipy_find_the_same_total_cost_on_rectangular_problems():
    generator = torch.Generator().manual_seed(3)
    for num_queries, num_targets in [(5, 5), (8, 3), (20, 13), (30, 1)]:
        cost = torch.randn(4, num_queries, num_targets, generator=generator)
        target_valid = torch.ones(4, num_targets, dtype=torch.bool)
        scipy_match = HungarianMatcher("scipy")(cost, None, target_valid)
        lap_match = HungarianMatcher("lap")(cost, None, target_valid)
        for b in range(4):
            expected = total_cost(cost[b], scipy_match[b])
            assert total_cost(cost[b], lap_match[b]) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("solver", SOLVERS)
def test_total_cost_equals_the_brute_force_optimum_on_tiny_problems(solver):
    generator = torch.Generator().manual_seed(4)
    matcher = HungarianMatcher(solver)
    for num_queries, num_targets in [(1, 1), (3, 2), (4, 4), (5, 3), (6, 1)]:
        cost = torch.randn(1, num_queries, num_targets, generator=generator)
        query_to_target = matcher(cost, None, torch.ones(1, num_targets, dtype=torch.bool))
        best = min(
            sum(cost[0, q, t].item() for t, q in enumerate(queries))
            for queries in itertools.permutations(range(num_queries), num_targets)
        )
        assert total_cost(cost[0], query_to_target[0]) == pytest.approx(best, abs=1e-5)


@pytest.mark.parametrize("solver", SOLVERS)
def test_nan_and_inf_costs_are_avoided_when_a_finite_assignment_exists(solver):
    cost = torch.tensor([[[float("nan"), 0.5], [0.2, float("inf")], [0.9, 0.1]]])
    query_to_target = HungarianMatcher(solver)(cost, None, torch.ones(1, 2, dtype=torch.bool))
    assert query_to_target.tolist() == [[-1, 0, 1]]


@pytest.mark.parametrize("solver", SOLVERS)
def test_all_nan_costs_still_give_a_complete_matching(solver):
    cost = torch.full((1, 4, 3), float("nan"))
    query_to_target = HungarianMatcher(solver)(cost, None, torch.ones(1, 3, dtype=torch.bool))
    assert sorted(t for t in query_to_target[0].tolist() if t >= 0) == [0, 1, 2]


def test_unknown_solver_is_rejected_at_build_time():
    with pytest.raises(ValueError, match="Unknown solver 'fast'"):
        HungarianMatcher("fast")


def test_missing_lapx_is_reported_at_build_time(monkeypatch):
    monkeypatch.setattr(matcher_module, "lap", None)
    with pytest.raises(ImportError, match="pip install lapx"):
        HungarianMatcher("lap")


def test_nonfinite_replacement_keeps_finite_entries_and_outweighs_their_sum():
    cost = np.array([[1.0, np.nan], [-2.0, np.inf], [-np.inf, 3.0]])
    finite = matcher_module.make_finite(cost)
    spread = np.abs(cost[np.isfinite(cost)]).sum()
    assert np.isfinite(finite).all()
    assert np.array_equal(finite[np.isfinite(cost)], cost[np.isfinite(cost)])
    assert finite[0, 1] == finite[1, 1] > spread
    assert finite[2, 0] < -spread
