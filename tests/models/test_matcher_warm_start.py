"""The matcher's Sinkhorn warm start: same optimum as without it; potentials near an optimal dual."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from hepattn.models import matcher as matcher_module
from hepattn.models.matcher import HungarianMatcher, sinkhorn_potentials, square_with_potentials

needs_lap = pytest.mark.skipif(matcher_module.lap is None, reason="lapx is not installed")
SOLVERS = ["scipy", pytest.param("lap", marks=needs_lap)]


def popular_query_costs(batch: int, queries: int, targets: int, generator: torch.Generator) -> torch.Tensor:
    """An untrained tracker's kind of cost: a per-query part all targets share, and a few cheap queries."""
    cost = 2.5 + 0.3 * torch.randn(batch, queries, targets, generator=generator)
    cost += 0.1 * torch.randn(batch, queries, 1, generator=generator)
    cost[:, :3] -= 1.0  # three queries that every target likes
    return cost


def total_and_check(cost, query_to_target, query_valid, target_valid) -> float:
    """Total cost of one event's matching, after checking it is one-to-one among valid entries."""
    queries = torch.nonzero(query_to_target >= 0).squeeze(-1)
    targets = query_to_target[queries]
    assert query_valid[queries].all() and target_valid[targets].all()
    assert sorted(targets.tolist()) == torch.nonzero(target_valid).squeeze(-1).tolist()
    return cost[queries, targets].double().sum().item()


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", ["random", "popular"])
def test_warm_started_matching_has_the_optimal_total_cost(solver, kind, monkeypatch):
    generator = torch.Generator().manual_seed(7)
    batch, num_queries, num_targets = 6, 30, 20
    if kind == "random":
        cost = torch.randn(batch, num_queries, num_targets, generator=generator)
    else:
        cost = popular_query_costs(batch, num_queries, num_targets, generator)
    query_valid = torch.rand(batch, num_queries, generator=generator) < 0.9
    target_valid = torch.rand(batch, num_targets, generator=generator) < 0.8
    query_valid[:, :num_targets] = True
    query_valid[0], target_valid[0] = False, True  # event 0: as many valid queries as targets, no dummy
    query_valid[0, :num_targets] = True
    target_valid[1] = False  # event 1: nothing to match
    squares = []  # the sizes of the square problems solved
    square = matcher_module.square_with_potentials
    monkeypatch.setattr(
        matcher_module, "square_with_potentials", lambda c, p: squares.append(len(c)) or square(c, p)
    )
    plain = HungarianMatcher(solver)(cost, query_valid, target_valid)
    warm = HungarianMatcher(solver, sinkhorn_iters=50)(cost, query_valid, target_valid)
    n_queries, n_targets = query_valid.sum(1), target_valid.sum(1)
    warm_rows = (n_targets > 0) & (n_queries - n_targets <= n_targets)
    assert sorted(squares) == sorted(n_queries[warm_rows].tolist()) and len(squares) >= 4
    for b in range(batch):
        args = (query_valid[b], target_valid[b])
        expected = total_and_check(cost[b], plain[b], *args)
        assert total_and_check(cost[b], warm[b], *args) == pytest.approx(expected, abs=1e-9)


def test_potentials_approach_an_optimal_dual():
    """With them, each query's optimal column is (nearly) its cheapest among the reduced costs."""
    generator = torch.Generator().manual_seed(3)
    cost = popular_query_costs(1, 24, 15, generator)
    valid_q, valid_t = torch.ones(1, 24, dtype=torch.bool), torch.ones(1, 15, dtype=torch.bool)
    for iters, bound in [(0, None), (300, 1e-3)]:
        potentials = sinkhorn_potentials(cost, valid_q, valid_t, iters)[0].double().numpy()
        square = square_with_potentials(cost[0].double().numpy(), potentials)
        rows, cols = linear_sum_assignment(square)
        slack = (square[rows, cols] - square.min(1)).max()  # 0 if the potentials were an optimal dual
        if bound is None:
            assert slack > 0.1  # without potentials the popular queries' targets are far from their minimum
        else:
            assert slack < bound


def test_potentials_are_zero_for_an_event_with_nonfinite_costs():
    generator = torch.Generator().manual_seed(5)
    cost = torch.randn(2, 8, 5, generator=generator)
    cost[1, 2, 3] = float("nan")
    valid_q, valid_t = torch.ones(2, 8, dtype=torch.bool), torch.ones(2, 5, dtype=torch.bool)
    potentials = sinkhorn_potentials(cost, valid_q, valid_t, 20)
    assert potentials[0].abs().sum() > 0 and torch.equal(potentials[1], torch.zeros(6))
    matched = HungarianMatcher(sinkhorn_iters=20)(cost, valid_q, valid_t)
    assert (matched[1, 2] != 3) and sorted(matched[1][matched[1] >= 0].tolist()) == list(range(5))


def test_sinkhorn_iters_must_not_be_negative():
    with pytest.raises(ValueError, match="sinkhorn_iters"):
        HungarianMatcher(sinkhorn_iters=-1)


def test_square_problem_keeps_the_costs_and_gives_dummies_their_potential():
    cost = np.arange(6.0).reshape(3, 2)
    square = square_with_potentials(cost, np.array([1.0, 2.0, 0.5]))
    assert np.array_equal(square, [[-1.0, -1.0, -0.5], [1.0, 1.0, -0.5], [3.0, 3.0, -0.5]])
