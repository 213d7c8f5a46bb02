import torch

from hepattn.metrics.reco import track_counts, track_flags, track_rates


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


def test_a_split_particle_with_one_foreign_hit_is_neither_found_nor_duplicated():
    # 6 hits split 3 + 3 and one half also takes a noise hit: both halves have completeness 3/6 = 0.5,
    # not > 0.5, so no DM match and no duplicate; both have purity > 0.5, so neither is fake. The pure
    # half has purity 1 > 0.75 (LHC found); the other 3/4 = 0.75 is not > 0.75.
    truth = [hits(12, *range(6))]
    counts, r = rates([hits(12, 0, 1, 2, 9), hits(12, 3, 4, 5)], truth)
    assert r["dm_efficiency"] == 0.0 and r["lhc_efficiency"] == 1.0
    assert counts["duplicate_tracks"] == 0 and counts["fake_tracks"] == 0 and counts["tracks"] == 2


def test_with_one_track_per_hit_an_odd_split_finds_the_particle_once():
    # 7 hits split 4 + 3 with no shared hit: only the 4-hit half has completeness > 0.5
    counts, r = rates([hits(12, 0, 1, 2, 3), hits(12, 4, 5, 6)], [hits(12, *range(7))])
    assert r["dm_efficiency"] == 1.0 and counts["duplicate_tracks"] == 0 and counts["fake_tracks"] == 0


def flags_of(pred_masks, true_masks, n=12, target=None):
    pred, true = torch.stack(pred_masks).unsqueeze(0), torch.stack(true_masks).unsqueeze(0)
    pv, tv = torch.ones(pred.shape[:2], dtype=torch.bool), torch.ones(true.shape[:2], dtype=torch.bool)
    tgt = None if target is None else torch.tensor([target])
    return {
        k: v[0].tolist()
        for k, v in track_flags(pv, pred, tv, true, torch.ones(1, n, dtype=bool), tgt).items()
    }


def test_flags_of_a_perfect_reconstruction():
    truth = [hits(12, 0, 1, 2, 3), hits(12, 4, 5, 6), hits(12, 7, 8, 9, 10)]
    f = flags_of(truth[::-1], truth)
    assert f["particle_dm"] == f["particle_perfect"] == f["particle_lhc"] == [True] * 3
    assert f["track_fake"] == f["track_duplicate"] == [False] * 3
    assert f["track_particle"] == f["track_dm_particle"] == [2, 1, 0]


def test_the_duplicate_flag_goes_to_the_track_sharing_fewer_hits():
    truth = [hits(12, *range(6)), hits(12, 6, 7, 8)]
    # both DM-match particle 0; the second shares 5 hits, the first 4; the third track is fake
    f = flags_of([hits(12, 0, 1, 2, 3), hits(12, 1, 2, 3, 4, 5), hits(12, 5, 6, 9, 10)], truth)
    assert f["track_duplicate"] == [True, False, False]
    assert f["track_fake"] == [False, False, True]
    assert f["track_particle"] == [0, 0, -1] and f["track_dm_particle"] == [0, 0, -1]


def test_non_target_particles_are_not_counted_found_but_still_make_a_track_real():
    truth = [hits(12, 0, 1, 2, 3), hits(12, 4, 5, 6)]
    f = flags_of([hits(12, 4, 5, 6)], truth, target=[True, False])
    assert f["particle_dm"] == [False, False] and f["track_fake"] == [False]


def test_track_counts_agree_with_a_loop_over_pairs():
    gen = torch.Generator().manual_seed(0)
    b, q, t, n = 3, 7, 5, 30
    owner = torch.randint(-1, t, (b, n), generator=gen)  # one particle per hit, -1 noise
    true = owner.unsqueeze(1) == torch.arange(t).view(1, t, 1)
    pred = torch.rand(b, q, n, generator=gen) < 0.2
    pred[:, :t] |= true & (torch.rand(b, t, n, generator=gen) < 0.8)  # some good tracks
    pv = torch.rand(b, q, generator=gen) < 0.9
    tv, hv, target = true.any(-1), torch.ones(b, n, dtype=torch.bool), torch.rand(b, t, generator=gen) < 0.7
    counts = track_counts(pv, pred, tv, true, hv, target)

    expected = dict.fromkeys(counts, 0)
    for i in range(b):
        dm_of = [0] * t
        for j in range(t):
            expected["particles"] += bool(target[i, j] and tv[i, j])
        for k in range(q):
            size = int(pred[i, k].sum())
            if not pv[i, k] or size == 0:
                continue
            expected["tracks"] += 1
            shared = [int((pred[i, k] & true[i, j]).sum()) for j in range(t)]
            expected["fake_tracks"] += all(s / size <= 0.5 for j, s in enumerate(shared) if tv[i, j])
            for j in range(t):
                dm_of[j] += bool(tv[i, j] and shared[j] / size > 0.5 and shared[j] / true[i, j].sum() > 0.5)
        expected["duplicate_tracks"] += sum(max(d - 1, 0) for d in dm_of)
        for j in range(t):
            if target[i, j] and tv[i, j]:
                found = [
                    pv[i, k] and (pred[i, k] & true[i, j]).sum() > max(pred[i, k].sum(), true[i, j].sum()) / 2
                    for k in range(q)
                ]
                expected["dm_found"] += any(found)
    for key in ("particles", "tracks", "fake_tracks", "duplicate_tracks", "dm_found"):
        assert counts[key] == expected[key], key
    assert counts["tracks"] > counts["fake_tracks"] > 0 and counts["dm_found"] > 0
