"""The benchmarked model is the shipped config with the chosen kernel; the event has realistic sizes."""

import torch

from hepattn.bench.cases import build_module, decoder_kernel, make_batch, num_targets, synthetic_event

CPU = torch.device("cpu")
FIELDS = ["x", "y", "z", "r", "eta", "phi", "u", "v"]


def test_synthetic_event_goes_through_the_training_data_path():
    batch = make_batch(synthetic_event(1000, 100), CPU)
    assert batch["hit_valid"].shape == (1, 1000) and batch["hit_valid"].all()
    assert int(batch["particle_valid"].sum()) == 100  # every target passes the pT > 1 GeV cut
    assert (batch["particle_hit_valid"].sum(-1) == 7).all()  # 7 hits each, the rest is noise
    assert int(batch["hit_seed"].sum()) == 100  # one seed hit per target
    assert all(batch[f"hit_{f}"].isfinite().all() for f in FIELDS)


def test_targets_follow_the_configs_hit_density_and_fit_the_queries():
    assert num_targets("tracking", 10_000, 2000) == 1300  # tracking.yaml: about 1.3k tracks in 10k hits
    assert num_targets("filter", 57_000, None) == 1300  # filter.yaml: the same tracks in 57k hits
    assert num_targets("tracking", 60_000, 2000) == 2000  # Hungarian matching: at most one per query


def test_the_kernel_and_size_reach_the_shipped_model():
    module, grad_clip = build_module("tracking", "flex", "reduced", CPU)
    model = module.model
    assert grad_clip == 1.0  # tracking.yaml's trainer.gradient_clip_val
    assert len(model.encoder.layers) == 2 and len(model.decoder.layers) == 2  # reduced depth
    assert model.queries.num_queries == 500
    assert model.encoder.layers[0].attn.summary.startswith("kernel=flex")
    assert model.encoder.layers[0].attn.window == 512  # per-layer shapes as shipped
    assert model.encoder.layers[0].attn.q_proj.in_features == 256
    assert model.decoder.layers[0].cross_attn.summary.startswith("kernel=flex")
    assert decoder_kernel("flash") == "flex"  # flash takes no mask: mask attention goes to flex
