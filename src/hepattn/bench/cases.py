"""What is benchmarked: a model built from a shipped TrackML config and a synthetic event of N hits.

# N hits, T target particles, Q queries.

The event has the layout of ``data.dataset.prepare_event`` and goes through the same ``to_model_inputs``
and ``collate`` as training data, so the model sees the fields, masks and targets it sees in training.
"""

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import hepattn
from hepattn.bench.flops import num_queries
from hepattn.data.batch import collate
from hepattn.data.kinematics import conformal, helix_radius
from hepattn.experiments.trackml.dataset import TargetCuts, to_model_inputs
from hepattn.models.attention import CAPABILITIES
from hepattn.models.decoder import SampledQueries
from hepattn.training.cli import build
from hepattn.training.module import MaskFormerModule

CONFIGS = Path(hepattn.__file__).parent / "configs" / "trackml"
MODELS = {"tracking": "tracking.yaml", "filter": "filter.yaml"}

# Hits per target particle in what each model reads (the configs' own comments): the tracker sees about
# 10k filtered hits with 1.3k target tracks, the filter about 57k pixel hits with the same 1.3k tracks.
HITS_PER_TARGET = {"tracking": 10_000 / 1_300, "filter": 57_000 / 1_300}
HITS_PER_TRACK = 7  # pixel hits of a target track (layers crossed)
LAYER_RADII = np.array([32.0, 72.0, 116.0, 172.0, 260.0, 360.0, 500.0])  # mm, pixel barrel and beyond

P = "--model.model.init_args"
# "reduced" keeps every per-layer shape of the shipped model (dim 256, 8 heads, window 512) and cuts the
# depth and the queries, so that a 2-core CPU measures 1k-16k hits in minutes; "full" is the config as is.
SIZES = {
    "full": [],
    "reduced": [
        f"{P}.encoder.init_args.depth=2",
        f"{P}.decoder.init_args.depth=2",
        f"{P}.queries.init_args.num_queries=500",
    ],
}


def decoder_kernel(kernel: str) -> str:
    """The decoder's kernel: the benchmarked one if it takes a mask (for mask attention), else flex."""
    return kernel if "attn_mask" in CAPABILITIES[kernel] else "flex"


def overrides(model: str, kernel: str, size: str) -> list[str]:
    """Config overrides: the kernel everywhere, the size, and a trainer that is never used to run."""
    args = ["--trainer.accelerator=cpu", "--trainer.precision=32-true", "--trainer.logger=false"]
    args.append(f"{P}.encoder.init_args.kernel={kernel}")
    if model == "tracking":
        args.append(f"{P}.decoder.init_args.kernel={decoder_kernel(kernel)}")
        args += SIZES[size]
    else:  # the filter has no decoder; only its depth is cut
        args += SIZES[size][:1]
    return args


def build_module(model: str, kernel: str, size: str, device: torch.device) -> tuple[MaskFormerModule, float]:
    """The LightningModule (model, criterion, optimizer) of a shipped config, and its gradient clip value."""
    for name in ("lightning.pytorch", "lightning.fabric"):  # no banners: the bench prints a table
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings():  # LightningCLI warns that `hepattn bench ...` is in sys.argv too
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = build([CONFIGS / MODELS[model]], overrides(model, kernel, size))
    cli.model.trainer = cli.trainer  # configure_optimizers reads max_steps (the schedule's length)
    return cli.model.to(device), cli.trainer.gradient_clip_val or 0.0


def num_targets(model: str, n_hits: int, num_queries: int | None) -> int:
    """Target particles in an event of n_hits for this model; at most one per query (Hungarian matching)."""
    n = round(n_hits / HITS_PER_TARGET[model])
    n = min(n, n_hits // HITS_PER_TRACK)
    return n if num_queries is None else min(n, num_queries)


def synthetic_event(n_hits: int, n_targets: int, seed: int = 0) -> dict[str, np.ndarray]:
    """An event as ``prepare_event`` writes it: n_targets helices of 7 hits, the other hits noise.

    Targets have pT 1-20 GeV, |eta| < 2.5 and start at the origin in a 2 T field; noise hits are spread
    uniformly over the same layers, phi and eta. Only the sizes matter for the timing.
    """
    if n_targets * HITS_PER_TRACK > n_hits:
        raise ValueError(f"{n_targets} targets of {HITS_PER_TRACK} hits do not fit in {n_hits} hits")
    rng = np.random.default_rng(seed)
    pt = rng.uniform(1.0, 20.0, n_targets)
    eta0, phi0 = rng.uniform(-2.5, 2.5, n_targets), rng.uniform(-np.pi, np.pi, n_targets)
    q = rng.choice([-1.0, 1.0], n_targets)
    n_noise = n_hits - n_targets * HITS_PER_TRACK
    owner = np.concatenate([np.repeat(np.arange(n_targets), HITS_PER_TRACK), np.full(n_noise, -1)])
    r = np.concatenate([np.tile(LAYER_RADII, n_targets), rng.choice(LAYER_RADII, n_noise)])
    t = owner.clip(0)
    bend = np.where(owner >= 0, q[t] * np.arcsin(r / (2 * helix_radius(pt[t]))), 0.0)
    phi = np.where(owner >= 0, phi0[t] - bend, rng.uniform(-np.pi, np.pi, n_hits))
    eta = np.where(owner >= 0, eta0[t], rng.uniform(-2.5, 2.5, n_hits))
    x, y, z = r * np.cos(phi), r * np.sin(phi), r * np.sinh(eta)
    u, v = conformal(x, y)
    f4 = np.float32
    hit = dict(x=x, y=y, z=z, r=r, phi=phi, eta=eta, theta=2 * np.arctan(np.exp(-eta)), u=u, v=v)
    hit |= dict(ncells=rng.integers(1, 6, n_hits), charge=rng.uniform(0.1, 1.0, n_hits))
    hit |= dict(extent_u=rng.integers(1, 4, n_hits), extent_v=rng.integers(1, 4, n_hits))
    hit |= dict(filter_prob=np.where(owner >= 0, 0.9, 0.1))
    event = {f"hit_{k}": np.asarray(a, f4) for k, a in hit.items()}
    event |= {"hit_particle": owner, "hit_id": np.arange(1, n_hits + 1), "hit_weight": np.ones(n_hits, f4)}
    particle = dict(pt=pt, eta=eta0, phi=phi0, q=q, vz=np.zeros(n_targets))
    particle |= dict(nhits=np.full(n_targets, HITS_PER_TRACK))
    event |= {f"particle_{k}": np.asarray(a, f4) for k, a in particle.items()}
    event["particle_id"] = np.arange(1, n_targets + 1)
    return event


def make_batch(event: dict[str, np.ndarray], device: torch.device, seed_weight_cap: float = 10.0) -> dict:
    """One event through the training data path (cuts at pT > 1 GeV, scaling, collate) on ``device``.

    With ``hit_seed_weight`` as ``tracking.yaml``'s data give it (``seed_weight_cap``), for the tracker's
    pT-weighted sampling of training seeds; a model that reads no weights ignores it.
    """
    inputs = to_model_inputs(event, TargetCuts(min_pt=1.0), seed_weight_cap=seed_weight_cap)
    return {k: v.to(device) for k, v in collate([inputs]).items()}


@dataclass
class Case:
    """A built module and its batch at one number of hits."""

    model: str
    kernel: str
    n_hits: int
    module: MaskFormerModule
    batch: dict[str, Tensor]
    grad_clip: float = 0.0  # the config's trainer.gradient_clip_val (norm); 0: none

    @property
    def device(self) -> torch.device:
        return self.batch[f"{self.module.model.input_names[0]}_valid"].device

    @property
    def num_targets(self) -> int:
        return int(self.batch["particle_valid"].sum())

    @property
    def num_queries(self) -> int | None:
        model = self.module.model
        return None if model.queries is None else num_queries(model, self.n_hits)

    @property
    def training_queries(self) -> int | None:
        """Queries of a training step: ``SampledQueries`` draw up to ``num_queries`` seeds, not one a hit."""
        queries = self.module.model.queries
        if isinstance(queries, SampledQueries):
            return min(queries.num_queries, self.n_hits)
        return self.num_queries


def make_case(model: str, kernel: str, n_hits: int, size: str, device: torch.device, seed: int = 0) -> Case:
    module, grad_clip = build_module(model, kernel, size, device)
    queries = module.model.queries
    targets = num_targets(model, n_hits, None if queries is None else queries.num_queries)
    batch = make_batch(synthetic_event(n_hits, targets, seed), device)
    return Case(model, kernel, n_hits, module, batch, grad_clip)
