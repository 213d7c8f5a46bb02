import torch

from hepattn.models.criterion import SetCriterion, align_targets
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


def test_a_perfect_shuffled_prediction_is_matched_back_and_costs_almost_nothing():
    torch.manual_seed(0)
    b, q, t, n = 2, 6, 4, 30
    owner = torch.randint(0, t, (b, n))
    batch = {
        "hit_valid": torch.ones(b, n, dtype=torch.bool),
        "particle_valid": torch.ones(b, t, dtype=torch.bool),
        "particle_hit_valid": owner.unsqueeze(1) == torch.arange(t).view(1, t, 1),
    }
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
    assignment = criterion.match(outputs["layer_0"], tasks, batch, outputs["queries"])
    for i in range(b):
        for j in range(t):
            assert assignment[i, perm[i, j]].item() == j
    losses = criterion(outputs, batch, tasks)
    assert losses["loss"].item() < 1e-3


def test_seed_cost_matches_each_seeded_query_to_the_owner_of_its_seed():
    torch.manual_seed(1)
    b, q, t, n = 2, 5, 3, 20
    owner = torch.randint(0, t, (b, n))
    batch = {
        "hit_valid": torch.ones(b, n, dtype=torch.bool),
        "particle_valid": torch.ones(b, t, dtype=torch.bool),
        "particle_hit_valid": owner.unsqueeze(1) == torch.arange(t).view(1, t, 1),
    }
    # queries 0..t-1 are seeded on a hit of particle perm[j]; the uninformative masks leave it to the seed
    perm = torch.stack([torch.randperm(t) for _ in range(b)])
    index = torch.zeros(b, q, dtype=torch.long)
    for i in range(b):
        for j in range(t):
            index[i, j] = torch.nonzero(owner[i] == perm[i, j])[0, 0]
    tasks = [ObjectMaskTask("mask", 8)]
    queries = {"valid": torch.ones(b, q, dtype=torch.bool), "index": index}
    layer = {"mask": {"logit": torch.zeros(b, q, n)}}
    assignment = SetCriterion(HungarianMatcher(), seed_cost=10.0).match(layer, tasks, batch, queries)
    assert assignment[:, :t].tolist() == perm.tolist()
