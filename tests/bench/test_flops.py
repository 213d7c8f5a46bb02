# N hits, Q queries, D dim.
"""The analytic FLOP count equals a hand count, and torch's own count of the matrix products."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hepattn.bench.flops import forward_count, linears, matching_cost_flops, total
from hepattn.models.decoder import Decoder, DynamicQueries
from hepattn.models.embed import InputNet
from hepattn.models.encoder import Encoder
from hepattn.models.maskformer import MaskFormer
from hepattn.models.tasks.classify import ObjectValidTask
from hepattn.models.tasks.filter import ConstituentClassificationTask
from hepattn.models.tasks.mask import ObjectMaskTask
from hepattn.models.tasks.regress import ObjectRegressionTask

DEVICE = {"name": "test", "flops_per_s": 1e12, "bytes_per_s": 1e9}


def test_one_linear_by_hand():
    c = linears(nn.Linear(3, 5), rows=7, s=2, device=DEVICE)
    assert c.flops == 2 * 7 * 3 * 5  # 210
    assert c.bytes == 2 * (7 * 3 + 7 * 5 + 3 * 5)  # read input and weight, write output: 142
    assert c.floor_s == pytest.approx(max(210 / 1e12, 142 / 1e9))


def test_tiny_filter_by_hand():
    # N = 10 hits, D = 8, one encoder layer with a window of 2 (3 keys per query), a GELU MLP of width 16.
    model = MaskFormer(
        [InputNet("hit", ["x", "y"], 8, hidden_dim=16)],
        Encoder(8, depth=1, num_heads=2, window=2, mlp="gelu", mlp_ratio=2.0),
        [ConstituentClassificationTask("hit_filter", 8)],
    )
    input_net = 2 * 16 + 16 * 8  # multiply-adds per hit: 160
    encoder = 8 * 8 + 8 * 16 + 8 * 8 + 8 * 16 + 16 * 8  # q, kv, out, fc1, fc2: 512
    head = 8 * 8 + 8 * 1  # 72
    attention = 4 * 10 * 3 * 8  # scores and weighted sum over 3 keys: 960
    assert total(forward_count(model, 10)).flops == 2 * 10 * (input_net + encoder + head) + attention  # 15840


def tiny_tracker(window: int | None, shared_embed: bool, quality_weight: float = 0.0) -> MaskFormer:
    d = 16
    tasks = [
        ConstituentClassificationTask("hit_seed", d, target_field="seed"),
        ObjectValidTask("track_valid", d),
        ObjectMaskTask(
            "track_hit", d, similarity="distance", shared_embed=shared_embed, quality_weight=quality_weight
        ),
        ObjectRegressionTask("track_params", d, fields=["pt", "eta"]),
    ]
    return MaskFormer(
        [InputNet("hit", ["x"], d, fourier_fields={"phi": 6.28}, num_frequencies=2)],
        Encoder(d, depth=2, num_heads=2, window=window, wrap=window is not None),
        tasks,
        Decoder(d, depth=2, num_heads=2, mask_attention=True),
        DynamicQueries(5, d, seed_task="hit_seed"),
    ).eval()


@pytest.mark.parametrize(
    ("window", "shared_embed", "quality_weight"), [(None, False, 0.0), (None, True, 0.0), (8, False, 1.0)]
)
def test_tracker_count_is_torch_count_plus_attention(window, shared_embed, quality_weight):
    """torch's FlopCounterMode counts every product but CPU SDPA; add the attention by hand."""
    n, q, d, layers = 40, 5, 16, 2
    model = tiny_tracker(window, shared_embed, quality_weight)
    batch = {"hit_x": torch.randn(1, n), "hit_phi": torch.rand(1, n)}
    batch["hit_valid"] = torch.ones(1, n, dtype=torch.bool)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(batch, aux_heads=False)
    keys = n if window is None else window + 1
    attention = layers * 4 * n * keys * d + layers * (4 * q * n * d + 4 * q * q * d)  # encoder; cross, self
    assert total(forward_count(model, n)).flops == counter.get_total_flops() + attention


def test_matching_costs_are_two_products_per_layer():
    model = tiny_tracker(None, False)  # mask costs bce and dice, two decoder layers
    assert matching_cost_flops(model, n=40, t=3) == 2 * 2 * (2 * 5 * 3 * 40)
