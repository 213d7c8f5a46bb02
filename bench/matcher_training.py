"""How long the exact matcher takes per training step while the shipped tracker learns.

Trains `configs/trackml/tracking.yaml` with one-to-one Hungarian matching (`variants/hungarian.yaml`;
the shipped recipe assigns each query to its seed's owner and matches nothing) and its 2,000 queries but
2 + 2 layers (the bench's "reduced" depth) on the bench's synthetic events (N hits, T = N / 7.7 helices
of 7 hits, the rest noise), one event per step, cycling over a few events, and records for every step
the time of the criterion's matcher call (every layer's costs stacked, solved exactly in host threads)
and of the whole step. An untrained model's costs are the solver's slowest case; this shows how that
changes as it learns.

    python bench/matcher_training.py --hits 10000 --steps 180 --out matcher_training.json \
        --plot matcher_training.png
"""

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from hepattn.bench.cases import CONFIGS, make_batch, num_targets, overrides, synthetic_event
from hepattn.bench.flops import num_queries
from hepattn.training.cli import build


class TimedMatcher(nn.Module):
    """The criterion's matcher, with the wall time of each call kept in `seconds`."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.seconds: list[float] = []

    def forward(self, *args):
        start = time.perf_counter()
        out = self.inner(*args)
        self.seconds.append(time.perf_counter() - start)
        return out


def train(hits: int, steps: int, events: int, solver: str, sinkhorn_iters: int, out: Path) -> list[dict]:
    """One row per step: step, matcher_ms, step_s, loss, Q, T; `out` is rewritten after every step."""
    args = [a for a in overrides("tracking", "torch", "reduced") if "num_queries" not in a]
    args += [
        f"--model.lr_scheduler.init_args.total_steps={steps}",
        f"--model.criterion.init_args.matcher.init_args.solver={solver}",
        f"--model.criterion.init_args.matcher.init_args.sinkhorn_iters={sinkhorn_iters}",
    ]
    cli = build([CONFIGS / "tracking.yaml", CONFIGS / "variants" / "hungarian.yaml"], args)
    module, clip = cli.model, cli.trainer.gradient_clip_val
    net, criterion = module.model.train(), module.criterion
    optimizers = module.configure_optimizers()
    optimizer, scheduler = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
    criterion.matcher = timed = TimedMatcher(criterion.matcher)
    n_queries, n_targets = num_queries(net, hits), num_targets("tracking", hits, net.queries.num_queries)
    batches = [
        make_batch(synthetic_event(hits, n_targets, seed), torch.device("cpu")) for seed in range(events)
    ]
    rows = []
    for step in range(1, steps + 1):
        batch = batches[(step - 1) % events]
        start = time.perf_counter()
        loss = criterion(net(batch), batch, net.tasks)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(net.parameters(), clip)
        optimizer.step()
        scheduler.step()
        step_s = time.perf_counter() - start
        rows.append(
            dict(
                step=step,
                matcher_ms=1000 * timed.seconds[-1],
                step_s=step_s,
                loss=loss.item(),
                Q=n_queries,
                T=n_targets,
            )
        )
        print(
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}),
            flush=True,
        )
        out.write_text(json.dumps(rows, indent=1))  # a run stopped from outside keeps its finished steps
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r["matcher_ms"] for r in rows], ".-", lw=0.8, label="matcher (all layers)")
    ax.plot(steps, [1000 * r["step_s"] for r in rows], "-", lw=0.8, color="grey", label="whole step")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("time per step [ms]")
    loss_ax = ax.twinx()
    loss_ax.plot(steps, [r["loss"] for r in rows], color="tab:red", lw=0.8, label="loss")
    loss_ax.set_ylabel("loss", color="tab:red")
    ax.legend(loc="upper right")
    ax.set_title(f"exact matching while learning: Q {rows[0]['Q']}, T {rows[0]['T']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=180)
    parser.add_argument("--events", type=int, default=16, help="synthetic events, cycled over")
    parser.add_argument("--solver", default="scipy")
    parser.add_argument("--sinkhorn-iters", type=int, default=0, help="the matcher's warm start (0: none)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the rows")
    parser.add_argument("--plot", type=Path, default=None, help="PNG: matcher and step time, loss")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = train(args.hits, args.steps, args.events, args.solver, args.sinkhorn_iters, args.out)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
