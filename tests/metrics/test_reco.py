import torch

from hepattn.metrics.reco import track_counts, track_rates


def hits(n, *idx):
    m = torch.zeros(n, dtype=torch.bool)
    m[list(idx)] = True
    return m


def rates(pred_masks, true_masks, n=12, pred_valid=None):
    pred = torch.stack(pred_masks).unsqueeze(0)
    true = torch.stack(true_masks).unsqueeze(0)
    pv = (
        torch.ones(1, len(pred_masks), dtype=torch.bool) if pred_valid is None else torch.tensor([pred_valid])
    )
    counts = track_counts(
        pv, pred, torch.ones(1, len(true_masks), dtype=torch.bool), true, torch.ones(1, n, dtype=torch.bool)
    )
    return counts, track_rates(counts)


def test_perfect_reconstruction():
    truth = [hits(12, 0, 1, 2, 3), hits(12, 4, 5, 6), hits(12, 7, 8, 9, 10)]
    _, r = rates(truth, truth)
    assert r == {
        "dm_efficiency": 1.0,
        "perfect_efficiency": 1.0,
        "lhc_efficiency": 1.0,
        "fake_rate": 0.0,
        "duplicate_rate": 0.0,
    }


def test_a_track_split_in_two_gives_a_duplicate():
    truth = [hits(12, 0, 1, 2, 3, 4, 5)]
    # both halves are pure; only a half with > 50% of the hits DM-matches, so split 4 + 2 with overlap
    counts, r = rates([hits(12, 0, 1, 2, 3), hits(12, 2, 3, 4, 5)], truth)
    assert counts["duplicate_tracks"] == 1 and r["duplicate_rate"] == 0.5 and r["dm_efficiency"] == 1.0
    assert r["perfect_efficiency"] == 0.0


def test_a_mixed_track_below_half_purity_is_a_fake():
    truth = [hits(12, 0, 1, 2, 3), hits(12, 4, 5, 6, 7), hits(12, 8, 9, 10, 11)]
    counts, r = rates([hits(12, 0, 1, 4, 5, 8)], truth)  # at most 2 of 5 hits from one particle
    assert counts["fake_tracks"] == 1 and r["fake_rate"] == 1.0 and r["dm_efficiency"] == 0.0


def test_lhc_and_double_majority_differ_on_an_incomplete_pure_track():
    truth = [hits(12, *range(8))]
    _, r = rates([hits(12, 0, 1, 2)], truth)  # pure but 3 of 8 hits
    assert r["lhc_efficiency"] == 1.0 and r["dm_efficiency"] == 0.0 and r["fake_rate"] == 0.0


def test_invalid_predictions_are_ignored():
    truth = [hits(12, 0, 1, 2, 3)]
    counts, _ = rates([hits(12, 0, 1, 2, 3), hits(12, 5, 6, 7)], truth, pred_valid=[True, False])
    assert counts["tracks"] == 1 and counts["fake_tracks"] == 0


def test_trackml_score_of_a_perfect_and_of_a_broken_reconstruction():
    import numpy as np

    from hepattn.metrics.reco import trackml_score

    particle = np.array([1, 1, 1, 1, 2, 2, 2, 0, 0])
    weight = np.array([0.1, 0.2, 0.2, 0.1, 0.1, 0.1, 0.2, 0.0, 0.0])
    assert trackml_score(particle * 7 + 3, particle, weight) == 1.0  # track ids are arbitrary labels
    # particle 1 split 2 + 2: no half has more than half of its hits; particle 2 still found
    split = np.array([10, 10, 11, 11, 12, 12, 12, 13, 14])
    assert abs(trackml_score(split, particle, weight) - 0.4 / 1.0) < 1e-12
    # particle 2's track also takes a hit of particle 1: both still found; the stolen hit does not count
    stolen = np.array([1, 1, 1, 2, 2, 2, 2, 0, 0])
    assert abs(trackml_score(stolen, particle, weight) - (0.5 + 0.4)) < 1e-12
