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


@torch.no_grad()
def sinkhorn_potentials(cost: Tensor, query_valid: Tensor, target_valid: Tensor, iters: int) -> Tensor:
    """Column potentials of each row's assignment problem, from annealed entropic transport, on cost's device.

    The (q, t) problem of a row, with q - t dummy targets of cost 0 added, is a square assignment; any
    column potential g subtracted from it leaves its optimum unchanged, since every column is used once.
    Good potentials make the exact solver's augmenting paths short: on an untrained tracker's 2,000 x
    1,300 costs, SciPy needs 2-3 s without them and 0.2-0.3 s with 400 iterations of these. They come from
    log-domain Sinkhorn iterations (Cuturi, NeurIPS 2013, arXiv:1306.0895) with the temperature lowered
    geometrically from the costs' spread to 1e-5 of it (epsilon scaling, Schmitzer, SIAM J. Sci. Comput.
    2019, arXiv:1610.06519), where the transport plan tends to an optimal assignment and the potentials to
    its dual. The q - t dummies are one column of mass q - t.

    Args:
        cost: (B, Q, T) pairwise cost.
        query_valid: (B, Q) bool, True for queries that may be matched.
        target_valid: (B, T) bool, True for real targets.
        iters: Sinkhorn iterations (each one row and one column update).

    Returns:
        (B, T + 1) float: each target's potential, then that of each of the row's dummy targets; zeros for a
        row whose valid costs are not all finite (the potentials only speed the solver up).
    """
    B, Q, T = cost.shape
    cost = cost.float()
    valid = query_valid[:, :, None] & target_valid[:, None, :]
    n_dummy = query_valid.sum(1) - target_valid.sum(1)  # (B,)
    finite = torch.where(valid, cost, 0.0).isfinite().all(2).all(1)
    cost = torch.where(valid & finite[:, None, None], cost, 0.0)
    count = valid.sum((1, 2), keepdim=True).clamp(min=1)
    mean = cost.sum((1, 2), keepdim=True) / count
    spread = (torch.where(valid, cost - mean, 0.0).pow(2).sum((1, 2), keepdim=True) / count).sqrt()
    tau = spread.clamp(min=1e-6)  # (B, 1, 1), the first temperature
    allowed = torch.cat([valid, (query_valid & (n_dummy > 0)[:, None])[:, :, None]], 2)
    # (B, Q, T + 1), the dummy column last; +inf where no pair is allowed, so that exp(-S / tau) = 0 there
    S = torch.cat([cost, cost.new_zeros(B, Q, 1)], 2).masked_fill_(~allowed, float("inf"))
    log_mass = torch.zeros(B, 1, T + 1, device=cost.device)
    log_mass[:, 0, T] = n_dummy.clamp(min=1).float().log()
    decay = 1e-5 ** (1 / max(iters - 1, 1))
    f, g = cost.new_zeros(B, Q, 1), cost.new_zeros(B, 1, T + 1)
    has_row, has_col = query_valid[:, :, None], allowed.any(1, keepdim=True)
    for i in range(iters):
        if i:
            tau = tau * decay
        f = torch.where(has_row, -tau * (g - S).div_(tau).logsumexp(2, keepdim=True), 0.0)
        g = torch.where(has_col, tau * (log_mass - (f - S).div_(tau).logsumexp(1, keepdim=True)), 0.0)
    if iters:
        g = g - tau * log_mass  # the merged dummy's potential -> that of each of its unit columns
    g = g.squeeze(1)
    return torch.where(finite[:, None] & g.isfinite(), g, 0.0)


def square_with_potentials(cost: np.ndarray, potentials: np.ndarray) -> np.ndarray:
    """The (q, q) problem of a (q, t) cost with q - t dummy targets of cost 0, less each column's potential.

    potentials: (t + 1,) from `sinkhorn_potentials`, the targets' then the dummies'. Its optimum, restricted
    to the first t columns, is an optimum of `cost` (up to the rounding of one float64 subtraction).
    """
    q, t = cost.shape
    square = np.empty((q, q))
    square[:, :t] = cost - potentials[:t]
    square[:, t:] = -potentials[t]
    return square


class HungarianMatcher(nn.Module):
    """Optimal one-to-one matching of queries to targets, from a summed pairwise cost.

    The rows of a batch are independent problems: they are solved on the host, each exactly, in parallel
    threads (both solvers release the GIL while they work). A criterion that stacks the costs of every
    decoder layer into one call waits for the device once per training step and solves the layers side by
    side.
    """

    def __init__(self, solver: str = "scipy", workers: int | None = None, sinkhorn_iters: int = 0):
        """Pick the assignment solver.

        Args:
            solver: Name of the assignment solver in `SOLVERS`: "scipy" (default) or "lap" (needs lapx).
            workers: threads that solve rows side by side; None: one per CPU core (at most one per row).
            sinkhorn_iters: if > 0, the exact solver gets a warm start: column potentials from this many
                Sinkhorn iterations on the cost's device (`sinkhorn_potentials`), and it solves the square
                problem with dummy targets that they give. Shortens the solve where the targets are many
                (an untrained tracker's 2,000 x 1,300 costs: 400 iterations, SciPy 0.2-0.3 s instead of
                2-2.5 s), but on a CPU the iterations cost more than they save (30 s on one core for such
                a layer); on a GPU they are not yet timed (docs/benchmarks.md). Rows where the dummies would
                outnumber the targets are solved as they are (a trained demo tracker's 5,003 x 144 costs:
                43 ms, but 1.1 s as a 5,003 x 5,003 square). 0 (default): none.
        """
        super().__init__()
        if solver not in SOLVERS:
            raise ValueError(f"Unknown solver {solver!r}; choose one of {sorted(SOLVERS)}.")
        if solver == "lap" and lap is None:
            raise ImportError("Solver 'lap' needs the lapx package: `pip install lapx`.")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if sinkhorn_iters < 0:
            raise ValueError(f"sinkhorn_iters must be at least 0, got {sinkhorn_iters}")
        self.solver = solver
        self.workers = workers
        self.sinkhorn_iters = sinkhorn_iters

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
        batch, num_queries, num_targets = cost.shape
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

        # the warm start's square problems, only where the dummies would not outnumber the targets
        warm = {b for b, q, t in problems if self.sinkhorn_iters and len(q) - len(t) <= len(t)}
        if warm:
            valid = torch.from_numpy(query_valid_np).to(cost.device)
            potentials = (
                sinkhorn_potentials(cost, valid, target_valid, self.sinkhorn_iters).double().cpu().numpy()
            )

        def solve_row(problem):
            b, queries, targets = problem
            row_cost = make_finite(cost_np[b][np.ix_(queries, targets)].astype(np.float64))
            if b not in warm or not potentials[b].any():
                return solve(row_cost)  # no warm start, or no potentials (non-finite costs)
            rows, cols = solve(square_with_potentials(row_cost, potentials[b][np.r_[targets, num_targets]]))
            real = cols < len(targets)  # the others are dummy targets
            return rows[real], cols[real]

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
