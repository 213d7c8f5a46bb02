# B batch, Q queries, T targets, N constituents.
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

try:
    import lap
except ImportError:
    lap = None


def solve_scipy(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min-cost assignment of a (q, t) matrix with q >= t; returns matched (rows, cols)."""
    return linear_sum_assignment(cost)


def solve_lap(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Jonker-Volgenant via lapx; zero-padding to a square leaves the optimum over real columns unchanged."""
    _, _, col_to_row = lap.lapjv(cost, extend_cost=True)
    return col_to_row, np.arange(cost.shape[1])


SOLVERS: dict[str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "scipy": solve_scipy,
    "lap": solve_lap,
}


def make_finite(cost: np.ndarray) -> np.ndarray:
    """Replace nan/±inf by ±big, where big outweighs the spread of any assignment built from finite entries.

    A diverging prediction must not crash the training step (scipy raises on nan and on an infeasible inf
    matrix, lap is undefined on nan); the loss still reports the divergence. Scaling big from the finite
    entries, rather than using e.g. 1e30, keeps the solver's float64 arithmetic exact among finite costs.
    """
    finite = np.isfinite(cost)
    if finite.all():
        return cost
    scale = np.abs(cost[finite]).max(initial=0.0) + 1.0
    big = 2.0 * scale * (min(cost.shape) + 1)
    return np.nan_to_num(cost, nan=big, posinf=big, neginf=-big)


class HungarianMatcher(nn.Module):
    """Optimal one-to-one matching of queries to targets, from a summed pairwise cost.

    The rows of a batch are independent problems: they are solved on the host, each exactly, in parallel
    threads (both solvers release the GIL while they work). A criterion that stacks the costs of every
    decoder layer into one call waits for the device once per training step and solves the layers side by
    side.
    """

    def __init__(self, solver: str = "scipy", workers: int | None = None):
        """Pick the assignment solver.

        Args:
            solver: Name of the assignment solver in `SOLVERS`: "scipy" (default) or "lap" (needs lapx).
            workers: threads that solve rows side by side; None: one per CPU core (at most one per row).
        """
        super().__init__()
        if solver not in SOLVERS:
            raise ValueError(f"Unknown solver {solver!r}; choose one of {sorted(SOLVERS)}.")
        if solver == "lap" and lap is None:
            raise ImportError("Solver 'lap' needs the lapx package: `pip install lapx`.")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.solver = solver
        self.workers = workers

    @torch.no_grad()
    def forward(self, cost: Tensor, query_valid: Tensor | None, target_valid: Tensor) -> Tensor:
        """Match every valid target to exactly one valid query, minimising the total cost.

        Args:
            cost: (B, Q, T) float pairwise cost; lower is better. Non-finite entries are treated as
                very expensive (nan, +inf) or very cheap (-inf), see `make_finite`.
            query_valid: (B, Q) bool, True for queries that may be matched; None means all.
            target_valid: (B, T) bool, True for real targets.

        Returns:
            (B, Q) long on `cost.device`: the target index matched to each query, -1 if unmatched.

        Raises:
            ValueError: If an event has more valid targets than valid queries.
        """
        solve = SOLVERS[self.solver]
        batch, num_queries, _ = cost.shape
        cost_np = cost.detach().float().cpu().numpy()  # one device-to-host copy for the whole batch
        target_valid_np = target_valid.cpu().numpy()
        if query_valid is None:
            query_valid_np = np.ones((batch, num_queries), dtype=bool)
        else:
            query_valid_np = query_valid.cpu().numpy()

        problems = []  # (row, queries, targets) of every row with targets
        for b in range(batch):
            queries = np.flatnonzero(query_valid_np[b])
            targets = np.flatnonzero(target_valid_np[b])
            if len(targets) > len(queries):
                raise ValueError(
                    f"Batch element {b} has {len(targets)} valid targets but only {len(queries)} valid "
                    "queries; every target needs its own query."
                )
            if len(targets):
                problems.append((b, queries, targets))

        def solve_row(problem):
            b, queries, targets = problem
            return solve(make_finite(cost_np[b][np.ix_(queries, targets)].astype(np.float64)))

        workers = min(len(problems), self.workers or os.cpu_count() or 1)
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                solutions = list(pool.map(solve_row, problems))
        else:
            solutions = [solve_row(p) for p in problems]
        query_to_target = np.full((batch, num_queries), -1, dtype=np.int64)
        for (b, queries, targets), (rows, cols) in zip(problems, solutions, strict=True):
            query_to_target[b, queries[rows]] = targets[cols]
        return torch.from_numpy(query_to_target).to(cost.device)
