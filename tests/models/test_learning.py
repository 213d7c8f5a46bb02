"""The model learns: a small MaskFormer assigns points to circles on fresh events."""

import time

import torch

from hepattn.data.toy import circle_batch
from hepattn.metrics.reco import track_counts, track_rates
from hepattn.models.criterion import SetCriterion
from hepattn.models.decoder import Decoder, DynamicQueries
from hepattn.models.embed import InputNet
from hepattn.models.encoder import Encoder
from hepattn.models.maskformer import MaskFormer
from hepattn.models.matcher import HungarianMatcher
from hepattn.models.tasks.classify import ObjectValidTask
from hepattn.models.tasks.filter import ConstituentClassificationTask
from hepattn.models.tasks.mask import ObjectMaskTask

TRAIN_STEPS = 1200  # about 65 s on 2 CPU cores
D = 64
MASK_WEIGHTS = {"bce": 5.0, "dice": 2.0}


def build_model() -> MaskFormer:
    return MaskFormer(
        input_nets=[InputNet("hit", ["x", "y", "r", "u", "v"], D, fourier_fields={"phi": 2 * torch.pi})],
        encoder=Encoder(D, depth=2, num_heads=4, window=32, wrap=True),
        decoder=Decoder(D, depth=2, num_heads=4, mask_attention=True),
        queries=DynamicQueries(num_queries=12, dim=D, seed_task="hit_seed"),
        tasks=[
            ConstituentClassificationTask("hit_seed", D, target_field="seed", pos_weight=5.0),
            ObjectValidTask("circle_valid", D, target_object="circle"),
            ObjectMaskTask("circle_hit", D, target_object="circle", losses=MASK_WEIGHTS, costs=MASK_WEIGHTS),
        ],
    )


def evaluate(model: MaskFormer, g: torch.Generator, num_events: int) -> dict[str, float]:
    model.eval()
    batch = circle_batch(g, num_events)
    with torch.no_grad():
        preds = model.predict(model(batch))
    counts = track_counts(
        preds["circle_valid"]["valid"] & preds["queries"]["valid"],
        preds["circle_hit"]["mask"],
        batch["circle_valid"],
        batch["circle_hit_valid"],
        batch["hit_valid"],
    )
    return track_rates(counts)


def test_maskformer_learns_to_find_circles():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(1)
    model = build_model()
    criterion = SetCriterion(HungarianMatcher(), target_object="circle")
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=6e-3, total_steps=TRAIN_STEPS, pct_start=0.1
    )
    start = time.monotonic()
    for _ in range(TRAIN_STEPS):
        batch = circle_batch(g, 16)
        loss = criterion(model(batch), batch, model.tasks)["loss"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    rates = evaluate(model, torch.Generator().manual_seed(12345), 100)
    print(f"{TRAIN_STEPS} steps in {time.monotonic() - start:.0f} s: {rates}")
    assert rates["dm_efficiency"] >= 0.90, rates
    assert rates["fake_rate"] <= 0.10, rates
