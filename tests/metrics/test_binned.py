import numpy as np
import pytest
import torch

from hepattn.metrics.binned import binned_rate, concat_tables, track_table


def mask(n, *idx):
    m = torch.zeros(n, dtype=torch.bool)
    m[list(idx)] = True
    return m


def event_table():
    # particles: 0 (pT 2, found perfectly), 1 (pT 5, missed), 2 (pT 0.5, not a target, found)
    true = torch.stack([mask(12, 0, 1, 2), mask(12, 3, 4, 5, 6), mask(12, 7, 8, 9)]).unsqueeze(0)
    # tracks: perfect for 0; a fake mixing 1 and 2; pure on 2 (a non-target, so no match row)
    pred = torch.stack([mask(12, 0, 1, 2), mask(12, 3, 4, 7, 8, 10), mask(12, 9, 7, 8)]).unsqueeze(0)
    particle = {"pt": torch.tensor([[2.0, 5.0, 0.5]]), "eta": torch.tensor([[0.1, -1.0, 2.0]])}
    track = {
        "pt": torch.tensor([[2.2, 7.0, 0.6]]),
        "eta": torch.tensor([[0.2, -0.5, 1.9]]),
        "vz": torch.zeros(1, 3),
    }
    ones = torch.ones(1, 3, dtype=torch.bool)
    target = torch.tensor([[True, True, False]])
    return track_table(ones, pred, ones, true, torch.ones(1, 12, dtype=torch.bool), particle, track, target)


def test_track_table_rows_of_a_hand_made_event():
    table = event_table()
    p, t, m = table["particles"], table["tracks"], table["matches"]
    assert p["pt"].tolist() == [2.0, 5.0] and p["dm"].tolist() == [True, False]
    assert p["perfect"].tolist() == [True, False] and p["lhc"].tolist() == [True, False]
    # a real track takes its majority particle's value, the fake one its own prediction
    assert t["pt"].tolist() == [2.0, 7.0, 0.5] and t["fake"].tolist() == [False, True, False]
    assert t["reco_pt"].tolist() == pytest.approx([2.2, 7.0, 0.6])  # always the track's own value
    assert t["duplicate"].tolist() == [False, False, False] and "vz" not in t  # vz: no true value
    assert m["pred_pt"].tolist() == pytest.approx([2.2]) and m["true_pt"].tolist() == [2.0]
    assert table["counts"] == {
        "particles": 2,
        "dm_found": 1,
        "perfect_found": 1,
        "lhc_found": 1,
        "tracks": 3,
        "fake_tracks": 1,
        "duplicate_tracks": 0,
    }


def test_concat_tables_sums_counts_and_stacks_rows():
    merged = concat_tables([event_table(), event_table()])
    assert merged["counts"]["tracks"] == 6 and merged["particles"]["pt"].tolist() == [2.0, 5.0] * 2


def test_track_table_without_particles():
    empty = torch.zeros(1, 0, dtype=torch.bool)
    pred = mask(4, 0, 1).view(1, 1, 4)
    table = track_table(
        torch.ones(1, 1, dtype=torch.bool),
        pred,
        empty,
        torch.zeros(1, 0, 4, dtype=torch.bool),
        torch.ones(1, 4, dtype=torch.bool),
        {"pt": torch.zeros(1, 0)},
        {"pt": torch.tensor([[3.0]])},
    )
    assert table["tracks"]["fake"].tolist() == [True] and table["tracks"]["pt"].tolist() == [3.0]
    assert len(table["particles"]["pt"]) == 0 and len(table["matches"]["pred_pt"]) == 0


def test_binned_rate_recovers_known_rates():
    bins = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    rng = np.random.default_rng(0)
    true_rate = [0.25, 1.0, 0.0, None]  # last bin empty
    values, passed = [], []
    for i, r in enumerate(true_rate[:3]):
        values += list(i + rng.uniform(0, 1, 40))
        passed += [True] * int(40 * r) + [False] * (40 - int(40 * r))
    values += [-1.0, 9.0]  # outside the bins: dropped
    passed += [True, True]
    centres, rate, error, counts = binned_rate(np.array(passed), np.array(values), bins, interval="binomial")
    assert centres.tolist() == [0.5, 1.5, 2.5, 3.5] and counts.tolist() == [40, 40, 40, 0]
    assert rate[:3].tolist() == [0.25, 1.0, 0.0] and np.isnan(rate[3])
    assert error[:, 0] == pytest.approx([np.sqrt(0.25 * 0.75 / 40)] * 2) and error[:, 1].tolist() == [0, 0]


def test_clopper_pearson_interval():
    bins = np.array([0.0, 1.0, 2.0])
    values = np.r_[np.full(10, 0.5), np.full(10, 1.5)]
    passed = np.r_[np.zeros(10, bool), np.ones(10, bool)]
    _, rate, error, _ = binned_rate(passed, values, bins)
    tail = (1 - 0.6826894921370859) / 2
    # no success in n trials: the upper limit solves (1 - p)^n = tail
    assert error[0, 0] == 0 and error[1, 0] == pytest.approx(1 - tail ** (1 / 10))
    assert error[1, 1] == 0 and error[0, 1] == pytest.approx(1 - tail ** (1 / 10))
    assert rate.tolist() == [0.0, 1.0]


def test_binned_rate_includes_the_last_edge_and_geometric_centres():
    centres, rate, _, counts = binned_rate(
        [True, False], [100.0, 1.0], np.array([1.0, 10.0, 100.0]), log=True
    )
    assert counts.tolist() == [1, 1] and rate.tolist() == [0.0, 1.0]
    assert centres == pytest.approx([np.sqrt(10), np.sqrt(1000)])
