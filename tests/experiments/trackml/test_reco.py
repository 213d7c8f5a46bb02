"""Filter hand-off, predictions file, submission CSV and evaluation on hand-built events."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hepattn.experiments.trackml.evaluate import evaluate
from hepattn.experiments.trackml.helix import helix_fit, helix_residuals, mask_helix_residuals
from hepattn.experiments.trackml.mend import extend_tracks, join_fragments
from hepattn.experiments.trackml.postprocess import (
    assign_hits,
    drop_unfit_tracks,
    one_hit_per_module,
    ranking_score,
    recover_tracks,
    refine_tracks,
    suppress_duplicates,
)
from hepattn.experiments.trackml.predictions import read_predictions, write_predictions
from hepattn.experiments.trackml.reco import (
    TRACK_FIELDS,
    Reconstruction,
    phi_sectors,
    select_hits,
    weak_tracks,
)
from hepattn.experiments.trackml.submission import submission_rows
from hepattn.metrics.reco import trackml_score


def event() -> dict[str, np.ndarray]:
    """8 hits: particle 0 (pT 2 GeV) owns hits 0-3, particle 1 (pT 3 GeV) hits 4-6, hit 7 is noise."""
    n = 8
    return {
        "hit_x": np.arange(n, dtype=np.float32),
        "hit_y": np.zeros(n, np.float32),
        "hit_z": np.zeros(n, np.float32),
        "hit_id": np.arange(1, n + 1),
        "hit_particle": np.array([0, 0, 0, 0, 1, 1, 1, -1]),
        "hit_weight": np.array([0.1, 0.2, 0.2, 0.1, 0.15, 0.1, 0.15, 0.0], np.float32),
        "particle_id": np.array([1001, 2002]),
        "particle_pt": np.array([2.0, 3.0], np.float32),
        "particle_eta": np.array([0.1, -1.0], np.float32),
        "particle_phi": np.array([0.0, 1.0], np.float32),
        "particle_vz": np.array([0.0, 5.0], np.float32),
        "particle_nhits": np.array([4.0, 3.0], np.float32),
    }


def predictions(hit_track, prob=None) -> dict[str, np.ndarray]:
    hit_track = np.asarray(hit_track)
    num_tracks = hit_track.max() + 1
    out = {
        "hit_filter_prob": np.ones(8, np.float32) if prob is None else np.asarray(prob, np.float32),
        "hit_track": hit_track,
    }
    return out | {f"track_{k}": np.zeros(num_tracks, np.float32) for k in ("prob", "pt", "eta", "phi", "vz")}


def test_select_hits_keeps_indices_and_recounts_particles():
    keep = np.array([True, False, True, True, False, False, True, True])
    kept = select_hits(event(), keep)
    assert kept["hit_index"].tolist() == [0, 2, 3, 6, 7]
    assert kept["hit_id"].tolist() == [1, 3, 4, 7, 8]
    assert kept["particle_nhits"].tolist() == [3, 1]
    assert kept["particle_nhits_all"].tolist() == [4, 3]
    again = select_hits(kept, np.array([False, True, True, True, False]))  # a second selection composes
    assert again["hit_index"].tolist() == [2, 3, 6]
    assert again["particle_nhits_all"].tolist() == [4, 3]


def test_perfect_reconstruction_scores_one(tmp_path):
    preds = predictions([0, 0, 0, 0, 1, 1, 1, -1])
    path = write_predictions(tmp_path / "p.h5", [("event000000001", event(), preds)])
    metrics = evaluate(path, tmp_path / "plots")
    plots = {Path(p).name for p in metrics["plots"]}
    assert plots >= {"efficiency_vs_pt.png", "fake_rate_vs_eta.png", "filter_roc.png", "residuals.png"}
    t = metrics["tracking"]
    assert (t["dm_efficiency"], t["perfect_efficiency"], t["lhc_efficiency"]) == (1.0, 1.0, 1.0)
    assert (t["fake_rate"], t["duplicate_rate"]) == (0.0, 0.0)
    assert t["trackml_score"] == pytest.approx(1.0)
    assert metrics["filter"]["hit_efficiency"] == 1.0 and metrics["filter"]["hits_per_event_after"] == 8


def test_filter_losses_count_against_the_efficiency(tmp_path):
    # the filter drops hits 4, 5 of particle 1; its last hit alone is not a double-majority track
    prob = [0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.9, 0.9]
    preds = predictions([0, 0, 0, 0, -1, -1, 1, -1], prob)
    path = write_predictions(tmp_path / "p.h5", [("event000000001", event(), preds)], {"threshold": 0.5})
    metrics = evaluate(path)
    assert metrics["tracking"]["dm_efficiency"] == 0.5
    assert metrics["filter"]["hit_efficiency"] == pytest.approx(5 / 7)
    assert metrics["filter"]["hit_purity"] == pytest.approx(5 / 6)


def test_particle_retention_counts_targets_keeping_three_hits_summed_over_events(tmp_path):
    # event 1: the filter leaves particle 1 one hit of three (lost), particle 0 all four; event 2 keeps all
    lossy = predictions([0, 0, 0, 0, -1, -1, 1, -1], [0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.9, 0.9])
    events = [("event000000001", event(), lossy), ("event000000002", event(), predictions([0] * 7 + [-1]))]
    path = write_predictions(tmp_path / "p.h5", events, {"threshold": 0.5})
    metrics = evaluate(path)
    assert (metrics["counts"]["particles"], metrics["counts"]["targets_retained"]) == (4, 3)
    assert metrics["filter"]["particle_retention"] == 3 / 4
    path = write_predictions(tmp_path / "q.h5", events, {"threshold": 0.5, "min_pt": 10.0})
    assert evaluate(path)["filter"]["particle_retention"] == 0.0  # no targets: 0, as the other rates


def test_fake_rate_counts_tracks_passing_the_cuts_by_their_reconstructed_pt_and_eta(tmp_path):
    # track 0 is particle 0's; track 1 (hits 3, 4, 7: three particles) is fake; track 2 holds hits 5, 6
    preds = predictions([0, 0, 0, 1, 1, 2, 2, 1])
    preds["track_pt"] = np.array([2.5, 0.4, 3.2], np.float32)  # the fake track is reconstructed below 1 GeV

    def tracking(name):
        path = write_predictions(tmp_path / name, [("event000000001", event(), preds)], {"min_pt": 1.0})
        return evaluate(path)["tracking"]

    t = tracking("p.h5")
    assert t["fake_rate_all"] == pytest.approx(1 / 3) and t["tracks_per_event"] == 3
    assert t["fake_rate"] == 0.0 and t["tracks_passing_cuts_per_event"] == 2
    preds["track_pt"][1] = 1.5  # now it passes the pT cut: one fake among three passing tracks
    assert tracking("q.h5")["fake_rate"] == pytest.approx(1 / 3)
    preds["track_eta"][1] = -4.2  # outside abs(eta) < 4: not counted again
    t = tracking("r.h5")
    assert t["fake_rate"] == 0.0 and t["fake_rate_all"] == pytest.approx(1 / 3)


def test_efficiency_in_pt_ranges_counts_the_targets_in_each(tmp_path):
    # particle 0 (2 GeV) found, particle 1 (3 GeV) not: 1-2 GeV holds none (2 is its upper edge)
    preds = predictions([0, 0, 0, 0, -1, -1, -1, -1])
    ev = event() | {"particle_pt": np.array([1.5, 6.0], np.float32)}
    path = write_predictions(tmp_path / "p.h5", [("event000000001", ev, preds)])
    t = evaluate(path)["tracking"]
    assert (t["dm_efficiency_pt_1_2"], t["dm_efficiency_pt_above_5"]) == (1.0, 0.0)
    ev["particle_pt"] = np.array([2.0, 3.0], np.float32)
    path = write_predictions(tmp_path / "q.h5", [("event000000001", ev, preds)])
    t = evaluate(path)["tracking"]
    assert t["dm_efficiency_pt_1_2"] is None and t["dm_efficiency_pt_above_5"] is None


def test_submission_rows_hold_every_hit_and_give_the_same_trackml_score(tmp_path):
    preds = predictions([0, 0, 1, 1, 2, 2, 2, 0])
    ev = event()
    path = write_predictions(tmp_path / "p.h5", [("event000000007", ev, preds)])
    # the event's hits file also holds two strip hits (ids 9, 10) the models never saw
    hits = pd.DataFrame({"hit_id": [9, *range(1, 9), 10]})
    csv = submission_rows(7, hits, ev, preds)
    assert csv.columns.tolist() == ["event_id", "hit_id", "track_id"]
    assert (csv.event_id == 7).all() and csv.hit_id.tolist() == hits.hit_id.tolist()
    assert csv.track_id.tolist() == [0, 1, 1, 2, 2, 3, 3, 3, 1, 0]
    pid = np.where(ev["hit_particle"] >= 0, ev["particle_id"][ev["hit_particle"].clip(0)], 0)
    scored = csv[csv.hit_id.isin(ev["hit_id"])]
    expected = trackml_score(scored.track_id.to_numpy(), pid, ev["hit_weight"])
    assert evaluate(path)["tracking"]["trackml_score"] == pytest.approx(expected)
    _, events = read_predictions(path)
    name, stored = next(events)
    assert name == "event000000007" and stored["hit_track"].tolist() == preds["hit_track"].tolist()


def test_missing_predictions_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.h5"):
        evaluate(tmp_path / "nothing.h5")


def test_duplicate_suppression_keeps_the_most_probable_of_overlapping_tracks():
    mask = torch.tensor(
        [
            [1, 1, 1, 1, 0, 0, 0, 0],  # track 0
            [1, 1, 1, 0, 0, 0, 0, 0],  # track 1: all its hits in track 0, less probable -> duplicate
            [0, 0, 0, 1, 1, 1, 0, 0],  # track 2: 1 of 3 hits shared -> kept
            [0, 0, 0, 0, 0, 0, 1, 1],  # track 3: not a candidate (probability < 0)
            [0, 0, 0, 0, 0, 0, 0, 0],  # track 4: no hits
        ],
        dtype=torch.bool,
    )
    prob = torch.tensor([0.6, 0.9, 0.5, -1.0, 0.99])
    keep = suppress_duplicates(prob, mask, max_overlap=0.5)
    assert keep.tolist() == [False, True, True, False, False]  # track 1 first: track 0 shares 3 of 4


def test_each_hit_goes_to_the_kept_track_that_claims_it_most_and_short_tracks_give_theirs_up():
    logit = torch.tensor(
        [
            [3.0, 2.0, 1.0, 0.5, -1.0, -1.0],  # track 0: hits 0-3
            [1.0, 4.0, -1.0, -1.0, 2.0, -1.0],  # track 1: wins hit 1, owns hit 4 -> 2 hits
            [9.0, 9.0, 9.0, 9.0, 9.0, 9.0],  # track 2: not kept
            [-1.0, -1.0, -1.0, -1.0, -1.0, -2.0],  # track 3: claims nothing
        ]
    )
    keep = torch.tensor([True, True, False, True])
    assert assign_hits(logit, keep).tolist() == [0, 1, 0, 0, 1, -1]
    assert assign_hits(logit, keep, min_hits=3).tolist() == [0, -1, 0, 0, -1, -1]
    assert assign_hits(logit, torch.zeros(4, dtype=torch.bool)).tolist() == [-1] * 6  # nothing kept


def test_a_mask_keeps_only_its_strongest_hit_on_each_module():
    module = torch.tensor([7, 7, 8, 9, 9, 9])
    logit = torch.tensor(
        [
            [2.0, 3.0, 1.0, 0.5, -1.0, 4.0],  # two hits on 7 and on 9: keeps hit 1 and hit 5
            [-1.0, -2.0, -1.0, -2.0, 1.0, -3.0],  # one hit per module already: unchanged
        ]
    )
    out = one_hit_per_module(logit, module)
    assert (out > 0).tolist() == [
        [False, True, True, False, False, True],
        [False, False, False, False, True, False],
    ]
    assert out[0, 0] == -torch.inf and out[0, 1] == 3.0  # the kept claims keep their logits
    assert torch.equal(out[1], logit[1]) and torch.equal(logit[0, 0], torch.tensor(2.0))  # input untouched
    # a hit withdrawn from one mask goes to the next track that claims it
    logit[1, 0] = 0.5
    assert assign_hits(one_hit_per_module(logit, module), torch.tensor([True, True])).tolist()[0] == 1


def test_tracks_with_an_unsure_mask_give_their_hits_up():
    logit = torch.tensor(
        [
            [4.0, 4.0, 4.0, -1.0, -1.0, -1.0],  # sure: mean probability 0.98
            [-1.0, -1.0, -1.0, 0.1, 0.2, 3.0],  # unsure: mean probability of its hits 0.68
        ]
    )
    keep = torch.tensor([True, True])
    assert assign_hits(logit, keep, min_mask_prob=0.5).tolist() == [0, 0, 0, 1, 1, 1]
    assert assign_hits(logit, keep, min_mask_prob=0.8).tolist() == [0, 0, 0, -1, -1, -1]


def helix(radius: float, phi0: float, z0: float, dz_ds: float, r: np.ndarray) -> np.ndarray:
    """(len(r), 3) points at radii r (mm) on a helix through the beam line (circle through the origin)."""
    s = 2 * radius * np.arcsin(r / (2 * radius))  # arc length from the origin
    angle = phi0 + s / (2 * radius)  # a chord from the origin turns by half the swept angle
    return np.stack([r * np.cos(angle), r * np.sin(angle), z0 + dz_ds * s], 1)


def test_pieces_of_two_neighbouring_particles_are_joined_inner_to_outer_as_they_fit():
    # a jet core: particles a and b cross the same four modules, 2 mm apart at the outer layer; the
    # masks cut each into an inner and an outer piece (tracks 0 + 1 of a, 2 + 3 of b)
    r = np.array([32.0, 72.0, 116.0, 172.0])
    a, b = helix(20_000.0, 0.3, 12.0, 0.8, r), helix(9_000.0, 0.31, 14.0, 0.82, r)
    xyz = np.concatenate([a[:2], a[2:], b[:2], b[2:]])
    owner = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    module = np.array([1, 2, 3, 4, 1, 2, 3, 4])
    joined = join_fragments(owner, xyz, module, max_hits=4, max_xy=0.3, max_z=0.6)
    assert joined.tolist() == [0, 0, 0, 0, 2, 2, 2, 2]  # a with a, b with b: never a's inner with b's outer
    assert join_fragments(owner, xyz, module, max_hits=1, max_xy=0.3, max_z=0.6).tolist() == owner.tolist()
    same_module = np.array([1, 2, 1, 4, 5, 6, 5, 8])  # the pieces share a module: two particles
    assert join_fragments(owner, xyz, same_module, 4, 0.3, 0.6).tolist() == owner.tolist()
    far = xyz.copy()
    far[4:, :2] = -far[4:, :2]  # b on the other side of the detector: its pieces still find each other
    assert join_fragments(owner, far, module, 4, 0.3, 0.6).tolist() == [0, 0, 0, 0, 2, 2, 2, 2]


def test_a_free_hit_joins_the_track_it_extends_along_a_helix_and_a_neighbours_does_not():
    r = np.array([32.0, 72.0, 116.0, 172.0])
    a, b = helix(20_000.0, 0.3, 12.0, 0.8, r), helix(9_000.0, 0.31, 14.0, 0.82, r)
    xyz = np.concatenate([a, b[2:3], a[2:3] + np.array([0.0, 0.0, 0.05])])  # a, free hits: b's, a's again
    owner = np.array([0, 0, -1, 0, -1, -1])  # a's hit at r = 116 mm is free
    module = np.array([1, 2, 3, 4, 7, 3])  # b's hit on a module of its own; the last on a's third module
    assert extend_tracks(owner, xyz, module, 0.3, 0.6).tolist() == [0, 0, 0, 0, -1, -1]
    assert extend_tracks(owner, xyz, module, 0.3, 0.6, min_size=4).tolist() == owner.tolist()  # too short
    module[[2, 5]] = 2, 4  # free hits on modules the track already crosses: not one particle's
    assert extend_tracks(owner, xyz, module, 0.3, 0.6).tolist() == owner.tolist()


def test_helix_residuals_vanish_on_a_helix_and_see_a_moved_hit():
    hits = helix(1500.0, 0.3, 12.0, 0.8, np.array([32.0, 72.0, 116.0, 172.0]))
    xy, z = helix_residuals(*hits.T)
    assert xy < 1e-6 and z < 1e-6
    hits[2, 2] += 3.0
    assert helix_residuals(*hits.T)[1] > 1.0


def test_short_tracks_of_two_particles_are_dropped_and_long_or_fitting_ones_kept():
    r = np.array([32.0, 72.0, 116.0, 172.0])
    a, b = helix(1500.0, 0.3, 12.0, 0.8, r), helix(900.0, 0.32, -20.0, 1.1, r)
    xyz = np.concatenate([a, a[:2], b[2:], b])  # track 0: particle a; track 1: 2 + 2 merge; track 2: b
    owner = np.array([0] * 4 + [1] * 4 + [2] * 4)
    assert drop_unfit_tracks(owner, xyz, 4, 0.5, 1.0).tolist() == [0] * 4 + [-1] * 4 + [2] * 4
    assert drop_unfit_tracks(owner, xyz, 3, 0.5, 1.0).tolist() == owner.tolist()  # only <= 3 hits checked


def test_mask_helix_residuals_equal_the_fit_of_each_mask_alone():
    rng = np.random.default_rng(3)
    r = np.array([32.0, 72.0, 116.0, 172.0])
    xyz = np.concatenate([helix(1500.0, 0.3, 12.0, 0.8, r), helix(900.0, 0.32, -20.0, 1.1, r)])
    xyz = np.concatenate([xyz, xyz[:4] + rng.normal(0.0, 2.0, (4, 3))])
    mask = torch.from_numpy(rng.random((40, len(xyz))) < 0.4)
    mask[:, :3] = True  # at least 3 hits in every mask
    xy, z = mask_helix_residuals(mask, xyz)
    for q in range(len(mask)):
        ref = helix_residuals(*xyz[mask[q].numpy()].T)
        np.testing.assert_allclose([xy[q].item(), z[q].item()], ref, rtol=1e-6, atol=1e-9)


def test_masks_of_fewer_than_3_hits_or_on_a_line_through_the_origin_have_no_fit():
    r = np.array([32.0, 72.0, 116.0, 172.0])
    xyz = np.concatenate([helix(1500.0, 0.3, 12.0, 0.8, r), np.outer(r, [0.6, 0.8, 0.5])])
    mask = torch.zeros(5, 8, dtype=torch.bool)
    mask[0, :4] = True  # a helix: fits
    mask[1, :2] = True  # 2 hits: any circle and line pass through them
    mask[2, 0] = True
    mask[4, 4:] = True  # on a straight line through the origin: no circle through the origin
    xy, z = mask_helix_residuals(mask, xyz)
    assert xy[0] < 1e-6 and z[0] < 1e-6
    assert torch.isinf(xy[1:]).all() and torch.isinf(z[1:]).all()
    candidate = torch.ones(5, dtype=torch.bool)
    score = ranking_score(torch.full((5,), 0.5), None, mask, candidate, xyz, 1.0, 2.0)
    assert score.tolist() == [1.5, 0.5, 0.5, 0.5, 0.5]


def test_candidates_that_fit_a_helix_are_kept_before_a_more_valid_merge():
    r = np.array([32.0, 72.0, 116.0, 172.0])
    xyz = np.concatenate([helix(1500.0, 0.3, 12.0, 0.8, r), helix(900.0, 0.32, -20.0, 1.1, r)])
    mask = torch.zeros(3, 8, dtype=torch.bool)
    mask[0, [0, 1, 2, 7]] = True  # two particles merged, the most valid candidate
    mask[1, :4], mask[2, 4:] = True, True  # each particle alone
    prob = torch.tensor([0.9, 0.8, 0.7])
    candidate = torch.ones(3, dtype=torch.bool)
    plain = ranking_score(prob, None, mask, candidate, xyz)
    assert suppress_duplicates(plain, mask, 0.5).tolist() == [True, False, True]
    fitted = ranking_score(prob, None, mask, candidate, xyz, fit_xy=0.5, fit_z=1.0)
    assert suppress_duplicates(fitted, mask, 0.5).tolist() == [False, True, True]
    quality = torch.tensor([0.5, 1.0, 1.0])  # the mask-quality head can reorder them too
    assert suppress_duplicates(ranking_score(prob, quality, mask, candidate, xyz), mask, 0.5).tolist() == [
        False,
        True,
        True,
    ]
    assert ranking_score(prob, None, mask, ~candidate, xyz, 0.5, 1.0).tolist() == [-1.0, -1.0, -1.0]


def test_refining_takes_a_stray_hit_off_a_track_and_leaves_merges_and_clean_tracks_alone():
    r = np.array([32.0, 72.0, 116.0, 172.0])
    a, b = helix(1500.0, 0.3, 12.0, 0.8, r), helix(900.0, 0.32, -20.0, 1.1, r)
    xyz = np.concatenate([a, b[2:3], a, b, a])
    owner = np.array([0] * 5 + [1] * 8 + [2] * 4)  # 0: a + a stray hit of b; 1: a and b merged; 2: a
    refined = refine_tracks(owner, xyz, 0.5, 1.0, max_removed=3)
    assert refined.tolist() == [0] * 4 + [-1] + [1] * 8 + [2] * 4
    assert refine_tracks(owner, xyz, 0.5, 1.0, max_removed=0).tolist() == owner.tolist()
    assert refine_tracks(owner, xyz, 0.5, 1.0, 3, min_hits=5).tolist() == owner.tolist()  # none may shrink


def test_refining_removes_the_stray_hit_even_where_it_is_not_the_worst_residual():
    r = np.array([32.0, 50.0, 72.0, 90.0, 116.0, 140.0, 172.0])
    xyz = helix(600.0, 0.3, 12.0, 0.8, r)
    angle = np.arctan2(xyz[6, 1], xyz[6, 0]) + 4.0 / 172.0  # the last hit moved 4 mm sideways
    xyz[6, :2] = 172.0 * np.cos(angle), 172.0 * np.sin(angle)
    owner = np.zeros(7, dtype=np.int64)
    xy, _ = helix_fit(*xyz.T)
    assert xy.argmax() != 6  # the stray hit pulls the circle onto itself
    assert refine_tracks(owner, xyz, 0.5, 1.0, max_removed=1).tolist() == [0] * 6 + [-1]


def test_unused_candidates_make_tracks_of_free_hits_that_fit_in_score_order():
    r = np.array([32.0, 72.0, 116.0, 172.0])
    a, b = helix(1500.0, 0.3, 12.0, 0.8, r), helix(900.0, 0.32, -20.0, 1.1, r)
    c, d = helix(400.0, 2.0, 30.0, -0.5, r), helix(2500.0, -1.5, 0.0, 2.0, r)
    xyz = np.concatenate([a, b, c[:2], d[2:], c[:2]])  # a: track 0; b free; 2 + 2 of c and d; 2 of c
    owner = np.array([0] * 4 + [-1] * 10)
    mask = torch.zeros(5, 14, dtype=torch.bool)
    mask[0, :4] = True
    mask[1, :8] = True  # a merge of a and b: its free hits are b's
    mask[2, 4:8] = True  # b alone
    mask[3, 8:12] = True  # free, but two particles: no helix
    mask[4, [0, 1, 12, 13]] = True  # 2 free hits only
    score = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    found = recover_tracks(owner, mask, score, xyz, 0.5, 1.0)
    assert found.tolist() == [0] * 4 + [1] * 4 + [-1] * 6
    score[1] = -1.0  # not a candidate: b's hits go to the next one
    assert recover_tracks(owner, mask, score, xyz, 0.5, 1.0).tolist() == [0] * 4 + [2] * 4 + [-1] * 6
    assert recover_tracks(owner, mask, score, xyz, 0.5, 1.0, min_hits=5).tolist() == owner.tolist()


def test_phi_sectors_cover_every_hit_and_give_each_phi_one_core():
    rng = np.random.default_rng(3)
    phi = rng.uniform(-np.pi, np.pi, 1000)
    assert len(phi_sectors(phi, 1000, 300, 0.1)) == 1  # small enough: one pass over everything
    sectors = phi_sectors(phi, 999, 300, 0.1)
    assert len(sectors) == 4
    assert sum(width for _, width, _ in sectors) == pytest.approx(2 * np.pi)
    cores = np.zeros(len(phi), int)
    for start, width, hits in sectors:
        core = np.mod(phi - start, 2 * np.pi) < width
        cores += core
        assert set(np.flatnonzero(core)) <= set(hits)  # a sector holds its core ...
        assert 250 <= core.sum() <= 251  # ... of equal counts, and its margins, across -pi / pi too
        assert np.all(np.mod(phi[hits] - (start - 0.1), 2 * np.pi) < width + 0.2)
    assert (cores == 1).all()


class TruthTracks(Reconstruction):
    """The post-processing's stand-in: each particle's hits are a track, wherever its hits are given."""

    def tracks(self, kept):
        owner = kept["hit_particle"]
        ids = np.unique(owner[owner >= 0])
        local = np.where(owner >= 0, np.searchsorted(ids, owner), -1)
        return local, {"prob": np.ones(len(ids), np.float32)} | {
            f: ids.astype(np.float32) for f in TRACK_FIELDS
        }


def test_sectors_give_the_tracks_of_one_pass_when_the_margin_holds_them():
    # 60 straight tracks of 5 hits spread over 0.02 rad each, all around phi, some across -pi / pi
    rng = np.random.default_rng(7)
    centre = np.repeat(rng.uniform(-np.pi, np.pi, 60), 5)
    phi = np.angle(np.exp(1j * (centre + rng.uniform(-0.01, 0.01, 300))))
    kept = {"hit_phi": phi, "hit_particle": np.repeat(np.arange(60), 5), "hit_filter_prob": np.ones(300)}
    reco = TruthTracks(None, None, min_hits=3)
    whole, whole_tracks = reco.tracks(kept)
    owner, tracks = reco.sector_tracks(kept, phi_sectors(phi, 100, 40, 0.05))
    assert len(tracks["prob"]) == 60 and (owner >= 0).all()
    # the same partition of the hits, each track once, its parameters with it
    assert len(np.unique(np.stack([owner, whole]), axis=1)[0]) == 60
    assert sorted(tracks["pt"][owner[::5]]) == sorted(whole_tracks["pt"])
    assert (tracks["pt"][owner] == kept["hit_particle"]).all()


class SeedRegions(TruthTracks):
    """Records the hits that may seed in each pass."""

    def tracks(self, kept):
        self.regions.append((kept["hit_phi"], kept["hit_filter_prob"], kept["hit_seed_region"]))
        return super().tracks(kept)


def test_in_sectors_only_sure_hits_of_the_core_and_its_seed_margin_seed():
    rng = np.random.default_rng(8)
    phi = rng.uniform(-np.pi, np.pi, 400)
    kept = {"hit_phi": phi, "hit_particle": np.arange(400), "hit_filter_prob": rng.uniform(0, 1, 400)}
    reco = SeedRegions(None, None, sector_seed_threshold=0.2, seed_margin=0.03)
    reco.regions = []
    sectors = phi_sectors(phi, 100, 50, 0.1)
    reco.sector_tracks(kept, sectors)
    for (start, width, _), (part_phi, prob, region) in zip(sectors, reco.regions, strict=True):
        offset = np.mod(part_phi - start, 2 * np.pi)  # 0 .. width: the core
        near = (offset < width + 0.03) | (offset > 2 * np.pi - 0.03)
        np.testing.assert_array_equal(region, near & (prob >= 0.2))
        assert (~near).any()  # the sector's margin holds hits that see but do not seed


def test_a_seed_threshold_seeds_queries_on_the_sure_hits_only_and_changes_nothing_when_all_pass():
    from hepattn.bench.cases import synthetic_event
    from hepattn.training.cli import build
    from hepattn.training.fit import config

    torch.manual_seed(0)
    tracker = build([config("trackml/tracking_small.yaml")], []).model.eval()
    event = synthetic_event(200, 12, seed=3)
    prob = np.random.default_rng(0).uniform(0.1, 1.0, len(event["hit_phi"])).astype(np.float32)
    kept = select_hits(event | {"hit_filter_prob": prob}, np.ones(len(prob), bool))
    every = Reconstruction(None, tracker, track_threshold=0.0)
    sure = Reconstruction(None, tracker, track_threshold=0.0, seed_threshold=0.5)
    lowest = Reconstruction(None, tracker, track_threshold=0.0, seed_threshold=0.05)  # every hit passes
    with torch.no_grad():
        seeds = tracker.model(sure.tracker_inputs(kept))["queries"]["index"][0].numpy()
        owner, _ = sure.tracks(kept)
        np.testing.assert_array_equal(lowest.tracks(kept)[0], every.tracks(kept)[0])
    assert sorted(seeds) == list(np.flatnonzero(prob >= 0.5))  # one query per sure hit, none other
    assert owner.shape == prob.shape and (owner[prob < 0.5] >= 0).any()  # the others are still assigned


def second_pass_hits() -> dict[str, np.ndarray]:
    """15 hits: 0-4 on a helix through the beam line (pT 1.2 GeV), 5-7 another helix's first three,
    8-9 anywhere, 10-14 scattered about (no helix)."""
    rng = np.random.default_rng(5)
    radius, angle = 2000.0, np.array([0.02, 0.04, 0.06, 0.08, 0.1])  # circle x^2 + y^2 = 2 R x
    first = np.stack([radius * (1 - np.cos(angle)), radius * np.sin(angle), 0.5 * radius * angle], 1)
    second = first[:3] * [1, -1, 2]
    xyz = np.concatenate([first, second, rng.uniform(-100, 100, (7, 3))])
    return {f"hit_{c}": xyz[:, i] for i, c in enumerate("xyz")} | {"hit_id": np.arange(15)}


def test_weak_tracks_are_the_short_and_those_that_fit_no_helix():
    kept = second_pass_hits()
    xyz = np.stack([kept[f"hit_{c}"] for c in "xyz"], 1)
    owner = np.array([0] * 5 + [1] * 3 + [-1] * 2 + [2] * 5)
    assert weak_tracks(owner, xyz, 3, 3, 0.3, 0.6).tolist() == [False, True, True]
    assert weak_tracks(owner, xyz, 3, 2, 0.0, 0.6).tolist() == [False, False, False]  # no fit asked
    assert weak_tracks(owner, xyz, 4, 5, 0.3, 0.6).tolist() == [True, True, True, True]  # track 3 owns none


class TwoPasses(Reconstruction):
    """A tracker stand-in: the first pass finds tracks 0-4 (pT 10), 5-7 (20) and 10-14 (30), the
    second pass one track (pT 40) of the first three hits it is given; records the hits of each pass."""

    def tracks(self, kept):
        self.seen = [*getattr(self, "seen", []), kept["hit_id"].tolist()]
        if len(self.seen) == 1:
            owner = np.array([0] * 5 + [1] * 3 + [-1] * 2 + [2] * 5)
            return owner, {f: np.array([10.0, 20.0, 30.0], np.float32) for f in ("prob", *TRACK_FIELDS)}
        owner = np.where(np.arange(len(kept["hit_id"])) < 3, 0, -1)
        return owner, {f: np.array([40.0], np.float32) for f in ("prob", *TRACK_FIELDS)}


def test_the_second_pass_redoes_the_free_hits_and_the_weak_tracks_and_keeps_the_strong():
    kept = second_pass_hits()
    reco = TwoPasses(None, None, min_hits=3, second_pass=True)
    owner, tracks = reco.passes(kept)
    assert reco.seen[1] == list(range(5, 15))  # the short track, the free hits and the one that fits no helix
    assert owner.tolist() == [0] * 5 + [1] * 3 + [-1] * 7
    assert tracks["pt"].tolist() == [10.0, 40.0]  # each track keeps its parameters
    once = TwoPasses(None, None, min_hits=3)
    np.testing.assert_array_equal(once.passes(kept)[0], [0] * 5 + [1] * 3 + [-1] * 2 + [2] * 5)
    assert len(once.seen) == 1
