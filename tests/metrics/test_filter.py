import numpy as np
import pytest

from hepattn.metrics.filter import (
    filter_metrics,
    particle_retention,
    retention_counts,
    retention_rate,
    roc_auc,
    roc_curve,
)

LABEL = np.array([True, True, True, False, False, False, False])


def test_auc_of_separating_reversed_and_constant_scores():
    score = np.where(LABEL, 0.9, 0.1) + np.linspace(0, 0.05, len(LABEL))
    assert roc_auc(score, LABEL) == 1.0
    assert roc_auc(-score, LABEL) == 0.0
    assert roc_auc(np.full(len(LABEL), 0.3), LABEL) == 0.5
    assert np.isnan(roc_auc(score, np.ones(len(LABEL), bool)))


def test_auc_equals_the_fraction_of_correctly_ordered_pairs():
    rng = np.random.default_rng(1)
    label = rng.random(300) < 0.3
    score = np.round(rng.normal(label * 0.8, 1.0), 1)  # rounding makes ties, which count one half
    pos, neg = score[label][:, None], score[~label][None, :]
    pairwise = ((pos > neg) + 0.5 * (pos == neg)).mean()
    assert roc_auc(score, label) == pytest.approx(pairwise, abs=1e-12)


def test_filter_efficiency_and_purity_at_a_threshold():
    score = np.array([0.9, 0.8, 0.2, 0.7, 0.1, 0.1, 0.5])
    m = filter_metrics(score, LABEL, threshold=0.5)  # keeps hits 0, 1, 3, 6: 2 of 3 positives
    assert m["hit_efficiency"] == pytest.approx(2 / 3) and m["hit_purity"] == pytest.approx(2 / 4)
    assert m["kept_fraction"] == pytest.approx(4 / 7) and m["roc_auc"] == pytest.approx(roc_auc(score, LABEL))
    assert all(type(v) is float for v in m.values())


def test_roc_curve_runs_from_nothing_to_everything_and_its_area_is_the_auc():
    rng = np.random.default_rng(2)
    label = rng.random(2000) < 0.4
    score = np.round(rng.normal(label * 1.0, 1.0), 2)
    fpr, tpr = roc_curve(score, label)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    # one point per distinct score: tied hits form a straight segment, so the trapezoids are exact
    area = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)
    assert area == pytest.approx(roc_auc(score, label), abs=1e-12)
    fpr_thin, tpr_thin = roc_curve(score, label, max_points=50)
    assert len(fpr_thin) <= 50 and (fpr_thin[-1], tpr_thin[-1]) == (1.0, 1.0)


def test_particle_retention_on_a_hand_made_event():
    # particles 0 (4 hits), 1 (3 hits), 2 (5 hits, not a target), noise -1
    hit_particle = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, -1, -1])
    keep = np.array([1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1], bool)
    target = np.array([True, True, False])
    counts = retention_counts(keep, hit_particle, target)
    assert counts == {"particles": 2, "retained": 1}  # 0 keeps 3 hits, 1 keeps only 2
    assert retention_counts(keep, hit_particle, np.array([0, 1])) == counts  # indices work too
    assert particle_retention(keep, hit_particle, target) == 0.5
    assert particle_retention(keep, hit_particle, target, min_hits=2) == 1.0
    summed = {k: counts[k] + retention_counts(np.ones(14, bool), hit_particle, target)[k] for k in counts}
    assert retention_rate(summed) == 3 / 4
