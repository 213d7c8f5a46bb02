import pytest
import torch

from hepattn.data.batch import collate, pack, unpack


def event(n_hits, n_particles):
    return {
        "hit_x": torch.arange(n_hits, dtype=torch.float32) + 1,
        "hit_valid": torch.ones(n_hits, dtype=torch.bool),
        "particle_valid": torch.ones(n_particles, dtype=torch.bool),
        "particle_hit_valid": torch.ones(n_particles, n_hits, dtype=torch.bool),
    }


def test_collate_pads_every_dimension_with_false_and_zero():
    batch = collate([event(5, 2), event(3, 4)])
    assert batch["hit_x"].shape == (2, 5)
    assert batch["particle_hit_valid"].shape == (2, 4, 5)
    assert batch["hit_valid"].sum(1).tolist() == [5, 3]
    assert batch["hit_x"][1, 3:].eq(0).all()
    assert batch["particle_hit_valid"][1].sum().item() == 4 * 3
    assert batch["particle_hit_valid"][0, 2:].any().item() is False


def test_collate_pad_to_fixes_object_sizes():
    batch = collate([event(5, 2), event(3, 4)], pad_to={"particle": 6, "hit": 8})
    assert batch["particle_valid"].shape == (2, 6)
    assert batch["particle_hit_valid"].shape == (2, 6, 8)
    assert batch["hit_x"].shape == (2, 8)
    with pytest.raises(ValueError, match="pad_to"):
        collate([event(5, 2)], pad_to={"particle": 1})


def test_collate_rejects_events_with_different_keys():
    bad = event(3, 1)
    del bad["hit_x"]
    with pytest.raises(ValueError, match="event 1"):
        collate([event(3, 1), bad])


def test_pack_then_unpack_is_the_identity_on_valid_entries():
    batch = collate([event(5, 2), event(3, 4), event(4, 1)])
    x = batch["hit_x"].unsqueeze(-1)
    packed, cu = pack(x, batch["hit_valid"])
    assert packed.shape == (1, 12, 1)
    assert cu.tolist() == [0, 5, 8, 12]
    assert torch.equal(unpack(packed, cu, batch["hit_valid"]), x)
