import numpy as np
import pytest

from hepattn.metrics.vertices import VertexEvent, binned_efficiency, binned_resolution, match_event, summarize


def _event(track_true, track_reco, true_z, reco_z, reco_score=None):
    true_id = np.arange(1, len(true_z) + 1)
    reco_id = np.arange(1, len(reco_z) + 1)
    xyz = lambda z: np.stack([np.zeros(len(z)), np.zeros(len(z)), np.asarray(z, float)], axis=1)  # noqa: E731
    score = np.zeros(len(reco_z)) if reco_score is None else np.asarray(reco_score, float)
    return VertexEvent(
        np.asarray(track_true), np.asarray(track_reco), true_id, xyz(true_z), reco_id, xyz(reco_z), score
    )


def _figures(*events):
    tables = [match_event(e) for e in events]
    return summarize([r for r, _ in tables], [t for _, t in tables]), tables


def test_a_perfect_reconstruction_finds_every_vertex_clean():
    # two truth vertices with 3 and 2 tracks, found exactly, 0.1 mm off in z
    event = _event([1, 1, 1, 2, 2], [1, 1, 1, 2, 2], [0.0, 5.0], [0.1, 5.1], reco_score=[9.0, 1.0])
    figures, [(reco, _true)] = _figures(event)
    assert list(reco.kind) == ["clean", "clean"]
    assert figures["efficiency"] == 1.0 and figures["fake_rate_per_event"] == 0.0
    assert figures["merge_rate"] == 0.0 and figures["split_rate"] == 0.0
    assert figures["assignment_efficiency"] == 1.0 and figures["assignment_purity"] == 1.0
    assert figures["z_rms_mm"] == pytest.approx(0.1)
    assert figures["hs_selection_efficiency"] == 1.0 and figures["hs_z_resolution_mm"] == pytest.approx(0.0)


def test_a_merged_pair_is_one_merged_vertex_and_loses_the_minor_truth_vertex():
    # truth 1 (3 tracks) and 2 (2 tracks) end in one vertex: purity 3/5 = 0.6 < 0.7
    event = _event([1, 1, 1, 2, 2], [1, 1, 1, 1, 1], [0.0, 0.3], [0.1])
    figures, [(reco, true)] = _figures(event)
    assert list(reco.kind) == ["merged"] and reco.truth.iloc[0] == 1
    assert list(true.match) == [1, 0]
    assert figures["efficiency"] == 0.5 and figures["merge_rate"] == 1.0
    assert figures["assignment_efficiency"] == pytest.approx(3 / 5)
    assert figures["assignment_purity"] == pytest.approx(3 / 5)


def test_a_split_vertex_counts_once_as_found_and_once_as_split():
    # truth 1's four tracks go 3 to vertex 1, 1 to vertex 2
    event = _event([1, 1, 1, 1], [1, 1, 1, 2], [0.0], [0.0, 0.4])
    figures, [(reco, _true)] = _figures(event)
    assert list(reco.kind) == ["clean", "split"]
    assert figures["efficiency"] == 1.0 and figures["split_rate"] == 0.5
    assert figures["assignment_efficiency"] == pytest.approx(3 / 4)


def test_a_vertex_without_truth_tracks_is_fake_and_so_is_an_empty_one():
    # track 3 comes from a collision that is no truth vertex (0); vertex 3 holds no track
    event = _event([1, 1, 0], [1, 1, 2], [0.0], [0.0, 2.0, 4.0], reco_score=[0.0, 5.0, 1.0])
    figures, [(reco, _true)] = _figures(event)
    assert list(reco.kind) == ["clean", "fake", "fake"]
    assert figures["fake_rate_per_event"] == 2.0
    assert figures["hs_selection_efficiency"] == 0.0  # the highest score is a fake


def test_binned_efficiency_counts_truth_vertices_per_bin():
    a = _event([1, 1, 2, 2, 2, 2], [1, 1, 0, 0, 0, 0], [0.0, 1.0], [0.0])
    _, tables = _figures(a)
    binned = binned_efficiency([t for _, t in tables], "ntracks", [0, 3, 10])
    assert list(binned["count"]) == [1, 1]
    assert list(binned["rate"]) == [1.0, 0.0]


def test_binned_resolution_is_the_core_width_of_the_z_residuals_in_each_bin():
    # event 1: vertices of 3 tracks 0.1 mm and 0.3 mm off (two of them: width 0.1), one of 2 tracks exact
    first = _event([1, 1, 1, 2, 2, 2, 3, 3], [1, 1, 1, 2, 2, 2, 3, 3], [0.0, 5.0, 9.0], [0.1, 5.3, 9.0])
    # event 2: a vertex of 2 tracks not found (its tracks unassigned): it is in no bin's width
    second = _event([1, 1], [0, 0], [1.0], [])
    tables = [match_event(first), match_event(second)]
    binned = binned_resolution([r for r, _ in tables], [t for _, t in tables], "ntracks", [2, 3, 10])
    assert list(binned["count"]) == [1, 2]
    assert binned["width"][0] == pytest.approx(0.0)
    assert binned["width"][1] == pytest.approx(
        0.5 * (np.quantile([0.1, 0.3], 0.84) - np.quantile([0.1, 0.3], 0.16))
    )
