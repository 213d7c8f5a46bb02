# B batch, N constituents, Q queries, T targets, D dim, H heads.
"""torch.compile (inductor, CPU) gives the eager results: the encoder per kernel and a full training step.

Cold inductor cache: about a minute on 2 cores, hence the slow marker.
"""

import pytest
import torch

from hepattn.data.batch import collate
from hepattn.models.criterion import SetCriterion
from hepattn.models.decoder import Decoder, DynamicQueries
from hepattn.models.embed import InputNet
from hepattn.models.encoder import Encoder
from hepattn.models.kernels import compiled_flex_on_cpu
from hepattn.models.maskformer import MaskFormer
from hepattn.models.matcher import HungarianMatcher
from hepattn.models.tasks.classify import ObjectClassificationTask, ObjectValidTask
from hepattn.models.tasks.filter import ConstituentClassificationTask
from hepattn.models.tasks.mask import ObjectMaskTask
from hepattn.models.tasks.regress import ObjectRegressionTask

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile"),
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated"),  # inside inductor
]

D, H = 32, 4
LENGTHS = (40, 25)  # one padded batch of two events of different lengths


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles its own graphs; no guards or recompile counts leak between tests."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def random_event(g: torch.Generator, n_hits: int, n_particles: int) -> dict[str, torch.Tensor]:
    owner = torch.randint(-1, n_particles, (n_hits,), generator=g)
    first_hit = torch.zeros(n_hits, dtype=torch.bool)
    for p in range(n_particles):
        hits = (owner == p).nonzero()
        first_hit[hits[:1, 0]] = True
    return {
        "hit_x": torch.randn(n_hits, generator=g),
        "hit_phi": (torch.rand(n_hits, generator=g) * 2 - 1) * torch.pi,
        "hit_valid": torch.ones(n_hits, dtype=torch.bool),
        "hit_on_target": owner >= 0,
        "hit_seed": first_hit,
        "particle_valid": torch.ones(n_particles, dtype=torch.bool),
        "particle_hit_valid": owner.unsqueeze(0) == torch.arange(n_particles).unsqueeze(1),
        "particle_pt": torch.rand(n_particles, generator=g) * 10 + 1,
        "particle_eta": torch.randn(n_particles, generator=g),
        "particle_charge": torch.randint(0, 2, (n_particles,), generator=g),
    }


def make_maskformer() -> MaskFormer:
    """Windowed encoder, dynamic queries and a mask-attention decoder, all on the torch kernel."""
    tasks = [
        ConstituentClassificationTask("hit_filter", D, target_field="on_target"),
        ConstituentClassificationTask("hit_seed", D, target_field="seed"),
        ObjectValidTask("track_valid", D),
        ObjectMaskTask("track_hit", D, similarity="distance", losses={"bce": 1.0, "dice": 1.0}),
        ObjectRegressionTask("track_params", D, fields=["pt", "eta"], log_fields=["pt"]),
        ObjectClassificationTask("track_charge", D, num_classes=2, field="charge"),
    ]
    return MaskFormer(
        input_nets=[
            InputNet("hit", ["x", "phi"], D, fourier_fields={"phi": 2 * torch.pi}, num_frequencies=4)
        ],
        encoder=Encoder(D, depth=2, num_heads=H, kernel="torch", window=8, wrap=True),
        decoder=Decoder(D, depth=2, num_heads=H, kernel="torch", mask_attention=True),
        queries=DynamicQueries(8, D, seed_task="hit_seed"),
        tasks=tasks,
    )


@pytest.mark.parametrize(
    "kernel",
    [
        "torch",
        pytest.param(
            "flex",
            marks=pytest.mark.skipif(
                not compiled_flex_on_cpu(), reason="compiled CPU flex is wrong without AVX-512"
            ),
        ),
    ],
)
def test_compiled_encoder_matches_eager(kernel):
    # dynamic=False: inductor's C++ flex template fails to build for dynamic shapes (torch 2.13), and
    # on CPU flex has no backward, so the comparison runs without gradients.
    torch.manual_seed(0)
    encoder = Encoder(D, depth=2, num_heads=H, kernel=kernel, window=8, wrap=True).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(len(LENGTHS), max(LENGTHS), D, generator=g)
    valid = torch.arange(max(LENGTHS)) < torch.tensor(LENGTHS)[:, None]
    with torch.no_grad():
        eager = encoder(x, valid)
        compiled = torch.compile(encoder, dynamic=False)(x, valid)
    torch.testing.assert_close(compiled[valid], eager[valid], atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def training_step():
    """One training step (forward, matching and losses, backward), eager and with the model compiled.

    The criterion stays eager: the Hungarian matching runs in scipy.
    """
    torch.manual_seed(0)
    model = make_maskformer()
    g = torch.Generator().manual_seed(0)
    batch = collate([random_event(g, LENGTHS[0], 5), random_event(g, LENGTHS[1], 3)])
    criterion = SetCriterion(HungarianMatcher())

    def step(forward):
        model.zero_grad()
        outputs = forward(batch)
        losses = criterion(outputs, batch, model.tasks)
        losses["loss"].backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        return outputs, losses, grads

    torch._dynamo.reset()
    eager = step(model)
    compiled = step(torch.compile(model, dynamic=False))
    torch._dynamo.reset()
    return eager, compiled


def test_compiled_maskformer_outputs_match_eager(training_step):
    # Every task output of every layer, and the same dynamic-query seeds (compared exactly, as ints).
    (eager, _, _), (compiled, _, _) = training_step
    assert {"encoder", "queries", "layer_0", "layer_1"} <= set(eager)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)


def test_compiled_maskformer_gradients_match_eager(training_step):
    (_, eager_losses, eager_grads), (_, compiled_losses, compiled_grads) = training_step
    torch.testing.assert_close(compiled_losses, eager_losses, atol=1e-5, rtol=1e-5)
    assert set(compiled_grads) == set(eager_grads) and len(eager_grads) > 0
    torch.testing.assert_close(compiled_grads, eager_grads, atol=1e-5, rtol=1e-4)
