"""The timed parts: each turns a ``Case`` into a callable that runs one part once.

# B batch, N hits, Q queries, T targets, D dim.

- encoder: ``Encoder.forward`` on the embedded hits, already sorted by phi as the model gives them, inference.
- decoder: ``Decoder.forward`` on the encoded hits and the initial queries, both in phi order as in the
  model: every layer with its mask attention (the mask logits of the previous layer), inference. The
  object heads are not included.
- model: ``MaskFormer.forward`` of the tracker at inference (``aux_heads=False``), everything from the hit
  fields to the last layer's heads.
- train: one training step: forward, the config's criterion (for the shipped tracker each query goes to
  its seed's owner; with ``variants/hungarian.yaml`` costs and matching of every layer), the losses,
  backward, gradient clipping as the config's trainer does, and the optimizer step.
- matcher: the Hungarian matcher alone on the summed costs of every decoder layer, stacked (L B, Q, T) as a
  ``SetCriterion`` hands them over once per training step, host copy included; one row per assignment solver,
  named in the kernel column ("scipy+sinkhorn": SciPy with the Sinkhorn warm start, CUDA only).
- filter: ``MaskFormer.forward`` of the hit filter (filter.yaml), inference.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
import yaml
from torch import Tensor, nn

from hepattn.bench.cases import CONFIGS, Case
from hepattn.models.criterion import SetCriterion
from hepattn.models.matcher import SOLVERS, HungarianMatcher, lap

PARTS = ("encoder", "decoder", "model", "train", "matcher", "filter")
PRECISIONS = ("fp32", "bf16")
COMPILE_MODES = ("off", "on", "graphs")


class Skip(Exception):
    """A part that cannot run in this setting; the message says why and goes into the report."""


SINKHORN_ITERS = 400  # of the warm-started matcher rows, "scipy+sinkhorn"


def available_solvers() -> list[str]:
    """The matcher rows: every installed solver, and SciPy warm-started by Sinkhorn potentials."""
    solvers = [name for name in SOLVERS if name != "lap" or lap is not None]
    return [*solvers[:1], "scipy+sinkhorn", *solvers[1:]]


def autocast(device: torch.device, precision: str) -> Callable[[], AbstractContextManager]:
    """fp32: plain float32 (TF32 matmuls on CUDA, as the configs set); bf16: autocast, as bf16-mixed does."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}'; choose one of {PRECISIONS}")
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def _compiled(fn: Callable, compile: str, device: torch.device) -> Callable:
    """off: eager; on: torch.compile; graphs: torch.compile with CUDA graphs ("reduce-overhead")."""
    if compile not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode '{compile}'; choose one of {COMPILE_MODES}")
    if compile == "off":
        return fn
    if compile == "graphs" and device.type != "cuda":
        raise Skip("CUDA graphs need a CUDA device")
    # static shapes: one shape per row, and inductor's CPU flex template needs them (torch 2.13)
    return torch.compile(fn, dynamic=False, mode="reduce-overhead" if compile == "graphs" else None)


def _inference(fn: Callable, ctx, *args, **kwargs) -> Callable[[], object]:
    def run():
        with torch.no_grad(), ctx():
            return fn(*args, **kwargs)

    return run


def encoder(case: Case, ctx, compile: str) -> Callable[[], object]:
    model, batch = case.module.model.eval(), case.batch
    with torch.no_grad(), ctx():
        x, valid, _ = model.embed(batch)  # embedded and sorted, as the model gives them to the encoder
    return _inference(_compiled(model.encoder, compile, case.device), ctx, x, valid)


def decoder(case: Case, ctx, compile: str) -> Callable[[], object]:
    model, batch = case.module.model.eval(), case.batch
    if model.decoder is None:
        raise Skip("the model has no decoder")
    with torch.no_grad(), ctx():  # the decoder sees the hits in phi order, as in the model
        x, valid, joined = model.embed(batch)
        x = model.encode(x, valid)
        encoded = {t.name: t(x) for t in model.constituent_tasks}
        q, q_valid, _ = model.make_queries(x, valid, encoded, batch, joined)
        mask_fn = model.mask_fn(x, joined) if model.mask_tasks else None
    return _inference(_compiled(model.decoder, compile, case.device), ctx, q, x, valid, q_valid, mask_fn)


def model(case: Case, ctx, compile: str) -> Callable[[], object]:
    net = _compiled(case.module.model.eval(), compile, case.device)
    return _inference(net, ctx, case.batch, aux_heads=False)


def train(case: Case, ctx, compile: str) -> Callable[[], object]:
    if case.kernel == "flex" and case.device.type == "cpu":
        raise Skip("FlexAttention has no backward on CPU")
    module, batch = case.module, case.batch
    net, criterion = module.model.train(), module.criterion
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    forward = _compiled(net, compile, case.device)
    params = [p for p in net.parameters() if p.requires_grad]

    def step():
        with ctx():
            loss = criterion(forward(batch), batch, net.tasks)["loss"]
        loss.backward()
        if case.grad_clip:
            nn.utils.clip_grad_norm_(params, case.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step


class _Recorder(nn.Module):
    """Stands in for the criterion's matcher to catch the arguments it is called with."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[Tensor, Tensor | None, Tensor]] = []

    def forward(self, cost: Tensor, query_valid: Tensor | None, target_valid: Tensor) -> Tensor:
        self.calls.append((cost, query_valid, target_valid))
        return self.inner(cost, query_valid, target_valid)


def hungarian_criterion() -> SetCriterion:
    """The ``SetCriterion`` of ``variants/hungarian.yaml`` (its target object, its seed cost)."""
    variant = yaml.safe_load((CONFIGS / "variants" / "hungarian.yaml").read_text())
    args = variant["model"]["criterion"]["init_args"]
    return SetCriterion(HungarianMatcher(), args["target_object"], seed_cost=args["seed_cost"])


def matcher_inputs(case: Case, ctx) -> tuple[Tensor, Tensor | None, Tensor]:
    """The (cost, query_valid, target_valid) the set criterion gives its matcher: every layer, stacked.

    The forward runs in training mode, with the queries a training step has (sampled seeds, not one per
    hit). The shipped tracker assigns each query to its seed's owner and matches nothing; its outputs go
    through a ``SetCriterion`` with one-to-one Hungarian matching (``variants/hungarian.yaml``) instead.
    """
    module, batch = case.module, case.batch
    criterion, net = module.criterion, module.model.train()
    if net.decoder is None:
        raise Skip("the model has no decoder, nothing to match")
    if not isinstance(criterion, SetCriterion):
        criterion = hungarian_criterion()
    recorder = _Recorder(criterion.matcher)
    criterion.matcher = recorder
    try:
        with torch.no_grad(), ctx():
            criterion(net(batch), batch, net.tasks)
    finally:
        criterion.matcher = recorder.inner
        net.eval()
    return recorder.calls[-1]


def check_solver(solver: str, device: torch.device) -> None:
    if solver.endswith("+sinkhorn") and device.type == "cpu":
        raise Skip("the Sinkhorn warm start is for CUDA: on a CPU its iterations take longer than they save")


def matcher_from_inputs(
    cost: Tensor, query_valid: Tensor | None, target_valid: Tensor, solver: str
) -> Callable[[], object]:
    """The matcher on these inputs; "name+sinkhorn" is solver name with `SINKHORN_ITERS` of warm start."""
    check_solver(solver, cost.device)
    name, _, warm = solver.partition("+")
    matcher = HungarianMatcher(name, sinkhorn_iters=SINKHORN_ITERS if warm else 0)
    return _inference(matcher, nullcontext, cost, query_valid, target_valid)


def matcher(case: Case, ctx, solver: str) -> Callable[[], object]:
    return matcher_from_inputs(*matcher_inputs(case, ctx), solver=solver)


BUILDERS = {"encoder": encoder, "decoder": decoder, "model": model, "train": train}
