import torch

from hepattn.models.criterion import SeedOwnerCriterion, SetCriterion, align_targets
from hepattn.models.matcher import HungarianMatcher
from hepattn.models.tasks.classify import ObjectValidTask
from hepattn.models.tasks.mask import ObjectMaskTask


def test_align_targets_gathers_fields_in_query_order():
    batch = {
        "particle_pt": torch.tensor([[10.0, 20.0, 30.0]]),
        "particle_hit_valid": torch.tensor([[[1, 0], [0, 1], [1, 1]]], dtype=torch.bool),
        "hit_valid": torch.ones(1, 2, dtype=torch.bool),
    }
    aligned = align_targets(batch, "particle", torch.tensor([[2, -1, 0, 1]]))
    assert aligned["particle_pt"].tolist() == [[30.0, 0.0, 10.0, 20.0]]
    assert aligned["particle_hit_valid"][0].tolist() == [
        [True, True],
        [False, False],
        [True, False],
        [False, True],
    ]
    assert "hit_valid" not in aligned


def owned_hits(b: int, t: int, n: int) -> tuple[torch.Tensor, dict]:
    """Each of n hits owned by one of t random targets: the owners (b, n) and the batch fields."""
    owner = torch.randint(0, t, (b, n))
    batch = {
        "hit_valid": torch.ones(b, n, dtype=torch.bool),
        "particle_valid": torch.ones(b, t, dtype=torch.bool),
        "particle_hit_valid": owner.unsqueeze(1) == torch.arange(t).view(1, t, 1),
    }
    return owner, batch


def test_a_perfect_shuffled_prediction_is_matched_back_and_costs_almost_nothing():
    torch.manual_seed(0)
    b, q, t, n = 2, 6, 4, 30
    _, batch = owned_hits(b, t, n)
    perm = torch.stack([torch.randperm(q) for _ in range(b)])  # query perm[b, i] predicts target i
    mask_logit = torch.full((b, q, n), -20.0)
    valid_logit = torch.full((b, q), -20.0)
    for i in range(b):
        for j in range(t):
            mask_logit[i, perm[i, j]] = torch.where(batch["particle_hit_valid"][i, j], 20.0, -20.0)
            valid_logit[i, perm[i, j]] = 20.0
    tasks = [ObjectValidTask("valid", 8), ObjectMaskTask("mask", 8)]
    outputs = {
        "queries": {"valid": torch.ones(b, q, dtype=torch.bool)},
        "layer_0": {"valid": {"logit": valid_logit}, "mask": {"logit": mask_logit}},
    }
    criterion = SetCriterion(HungarianMatcher())
    (assignment,) = criterion.match([outputs["layer_0"]], tasks, batch, outputs["queries"])
    for i in range(b):
        for j in range(t):
            assert assignment[i, perm[i, j]].item() == j
    losses = criterion(outputs, batch, tasks)
    assert losses["loss"].item() < 1e-3


def test_seed_cost_matches_each_seeded_query_to_the_owner_of_its_seed():
    torch.manual_seed(1)
    b, q, t, n = 2, 5, 3, 20
    owner, batch = owned_hits(b, t, n)
    # queries 0..t-1 are seeded on a hit of particle perm[j]; the uninformative masks leave it to the seed
    perm = torch.stack([torch.randperm(t) for _ in range(b)])
    index = torch.zeros(b, q, dtype=torch.long)
    for i in range(b):
        for j in range(t):
            index[i, j] = torch.nonzero(owner[i] == perm[i, j])[0, 0]
    tasks = [ObjectMaskTask("mask", 8)]
    queries = {"valid": torch.ones(b, q, dtype=torch.bool), "index": index}
    layer = {"mask": {"logit": torch.zeros(b, q, n)}}
    (assignment,) = SetCriterion(HungarianMatcher(), seed_cost=10.0).match([layer], tasks, batch, queries)
    assert assignment[:, :t].tolist() == perm.tolist()


def test_layers_matched_in_one_call_equal_layers_matched_one_by_one():
    """Three layers' costs stacked into one matcher call give each layer its own optimal assignment."""
    torch.manual_seed(4)
    b, q, t, n = 2, 7, 4, 25
    _, batch = owned_hits(b, t, n)
    batch["particle_valid"][1, 2:] = False
    tasks = [ObjectValidTask("valid", 8), ObjectMaskTask("mask", 8)]
    queries = {"valid": torch.ones(b, q, dtype=torch.bool)}
    layers = [
        {"valid": {"logit": torch.randn(b, q)}, "mask": {"logit": 3 * torch.randn(b, q, n)}} for _ in "abc"
    ]
    criterion = SetCriterion(HungarianMatcher())
    together = criterion.match(layers, tasks, batch, queries)
    alone = [criterion.match([layer], tasks, batch, queries)[0] for layer in layers]
    assert all(torch.equal(x, y) for x, y in zip(together, alone, strict=True))
    assert not torch.equal(together[0], together[1])  # the layers' costs differ, and so do their matches


def seeded_batch(b: int, t: int, n: int, seed: int):
    """Hits owned by random targets (-1: by none), every hit seeding one query."""
    torch.manual_seed(seed)
    owner = torch.randint(-1, t, (b, n))
    batch = {
        "hit_valid": torch.ones(b, n, dtype=torch.bool),
        "particle_valid": torch.ones(b, t, dtype=torch.bool),
        "particle_hit_valid": owner.unsqueeze(1) == torch.arange(t).view(1, t, 1),
    }
    queries = {"valid": torch.ones(b, n, dtype=torch.bool), "index": torch.arange(n).expand(b, -1)}
    return owner, batch, queries


def test_seed_owner_criterion_assigns_every_seeded_query_to_its_seed_owner():
    owner, batch, queries = seeded_batch(2, 4, 30, seed=2)
    criterion = SeedOwnerCriterion()
    first, second = criterion.match([{}, {}], [], batch, queries)  # the same for every layer
    assert first.tolist() == second.tolist() == owner.tolist()
    # an invalid (padding) target owns nothing, an invalid query is assigned nothing
    batch["particle_valid"][0, 1] = False
    queries["valid"][1, 0] = False
    expected = owner.clone()
    expected[0][owner[0] == 1] = -1
    expected[1, 0] = -1
    assert criterion.match([{}], [], batch, queries)[0].tolist() == expected.tolist()
    no_targets = {k: v[:, :0] if k.startswith("particle") else v for k, v in batch.items()}
    assert (criterion.match([{}], [], no_targets, queries)[0] == -1).all()


def test_seed_owner_criterion_trains_masks_of_all_objects_and_validity_of_flagged_ones():
    owner, batch, queries = seeded_batch(1, 3, 12, seed=3)
    batch["particle_target"] = torch.tensor([[True, False, True]])
    tasks = [ObjectValidTask("valid", 8, target_flag="target"), ObjectMaskTask("mask", 8)]
    seed_is_target = (owner >= 0) & (owner != 1)
    perfect_mask = torch.where(batch["particle_hit_valid"][0][owner[0].clamp_min(0)], 20.0, -20.0)[None]
    outputs = {
        "queries": queries,
        "layer_0": {
            "valid": {"logit": torch.where(seed_is_target, 20.0, -20.0)},
            "mask": {"logit": torch.where((owner >= 0).unsqueeze(-1), perfect_mask, -20.0)},
        },
    }
    losses = SeedOwnerCriterion()(outputs, batch, tasks)
    assert losses["loss"].item() < 1e-3  # masks of particle 1 (no target) are learned, its validity is 0
    outputs["layer_0"]["valid"]["logit"] = torch.where(owner >= 0, 20.0, -20.0)  # calls particle 1 real
    assert SeedOwnerCriterion()(outputs, batch, tasks)["layer_0/valid/bce"].item() > 1.0
    outputs["layer_0"]["mask"]["logit"][0, owner[0] == 1] *= -1  # wrong masks on particle 1's seeds
    assert SeedOwnerCriterion()(outputs, batch, tasks)["layer_0/mask/bce"].item() > 1.0


def test_flagged_validity_cost_prefers_not_real_for_unflagged_targets():
    task = ObjectValidTask("valid", 8, target_flag="target")
    flags = torch.tensor([[True, False]])
    batch = {"particle_valid": torch.ones(1, 2, dtype=torch.bool), "particle_target": flags}
    cost = task.cost({"logit": torch.tensor([[4.0, -4.0]])}, batch)
    assert cost[0, 0, 0] < cost[0, 0, 1]  # a confident query is best matched to the flagged target
    assert cost[0, 1, 1] < cost[0, 1, 0]  # an unsure one to the unflagged target
