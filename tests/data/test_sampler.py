from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from hepattn.data.sampler import SizeBalancedSampler


def per_rank(sizes, replicas, epoch=0, seed=0):
    samplers = [SizeBalancedSampler(range(len(sizes)), sizes, replicas, r, seed) for r in range(replicas)]
    for sampler in samplers:
        sampler.set_epoch(epoch)
    return [list(sampler) for sampler in samplers]


@pytest.mark.parametrize(("events", "replicas"), [(300, 2), (301, 2), (31, 2), (100, 3), (7, 4), (3, 4)])
def test_every_event_once_and_equal_shares(events, replicas):
    sizes = np.random.default_rng(1).integers(500, 5000, events)
    ranks = per_rank(sizes, replicas)
    steps = -(-events // replicas)
    assert all(len(r) == steps for r in ranks)
    assert set(i for r in ranks for i in r) == set(range(events))  # every event
    for step in zip(*ranks, strict=True):
        assert len(set(step)) == min(replicas, events)  # the padding never repeats an event in its step


def test_steps_pair_events_of_similar_size():
    # demo-like spread: tracker events have 2,800 +- 1,100 hits
    sizes = np.random.default_rng(2).normal(2800, 1100, 300).clip(300).astype(int)

    def cost(ranks):  # a DDP step costs its largest event; relative to the mean event
        return np.mean([max(sizes[i] for i in step) for step in zip(*ranks, strict=True)]) / sizes.mean()

    plain = [list(DistributedSampler(range(300), 2, rank, shuffle=True, seed=0)) for rank in range(2)]
    assert cost(plain) > 1.15
    assert cost(per_rank(sizes, 2)) < 1.03


def test_the_larger_event_of_a_step_goes_to_either_rank():
    sizes = np.random.default_rng(3).integers(500, 5000, 300)
    first, second = per_rank(sizes, 2)
    larger_on_first = np.mean([sizes[a] > sizes[b] for a, b in zip(first, second, strict=True)])
    assert 0.4 < larger_on_first < 0.6


def test_order_depends_on_seed_and_epoch_only():
    sizes = list(range(64))
    assert per_rank(sizes, 2, epoch=3) == per_rank(sizes, 2, epoch=3)
    assert per_rank(sizes, 2, epoch=3) != per_rank(sizes, 2, epoch=4)
    assert per_rank(sizes, 2, seed=1) != per_rank(sizes, 2, seed=2)


def test_sizes_must_match_the_dataset():
    with pytest.raises(ValueError, match="3 sizes for a dataset of 4"):
        SizeBalancedSampler(range(4), [1, 2, 3], 2, 0)


def test_datamodule_balances_only_under_ddp(tmp_path, make_frames):
    from hepattn.experiments.trackml.datamodule import TrackMLDataModule
    from hepattn.experiments.trackml.dataset import prepare_event, save_event

    for i in range(4):
        volumes = [8] if i % 2 else None  # 6 hits instead of 7
        save_event(tmp_path / f"event00000000{i}.npz", prepare_event(make_frames(), volumes=volumes))
    dm = TrackMLDataModule(train_dir=str(tmp_path), min_pt=0.1, min_hits=2)
    assert dm.event_sizes("train") == [7, 6, 7, 6]
    assert isinstance(dm.train_dataloader().sampler, torch.utils.data.RandomSampler)
    dm.trainer = SimpleNamespace(world_size=2, global_rank=1)
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, SizeBalancedSampler) and loader.sampler.rank == 1
    assert len(list(loader)) == 2
