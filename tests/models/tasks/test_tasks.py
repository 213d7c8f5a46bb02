import pytest
import torch
from torch.nn import functional as F

from hepattn.models.tasks.classify import ObjectClassificationTask, ObjectValidTask
from hepattn.models.tasks.filter import ConstituentClassificationTask
from hepattn.models.tasks.mask import DistanceSimilarity, ObjectMaskTask
from hepattn.models.tasks.regress import ObjectRegressionTask

D = 16


def test_regression_normalisation_round_trips_and_uses_log_for_pt():
    task = ObjectRegressionTask(
        "p", D, fields=["pt", "eta"], offsets=[0.5, 0.0], scales=[2.0, 1.5], log_fields=["pt"]
    )
    values = torch.tensor([[[3.0, -1.2], [0.7, 2.0]]])
    norm = task.normalise(values)
    torch.testing.assert_close(norm[..., 0], (values[..., 0].log() - 0.5) / 2.0)
    torch.testing.assert_close(task.denormalise(norm), values)
    preds = task.predict({"value": norm})
    torch.testing.assert_close(preds["pt"], values[..., 0])


def test_regression_rejects_inconsistent_settings():
    with pytest.raises(ValueError, match="scales"):
        ObjectRegressionTask("p", D, fields=["pt"], scales=[1.0, 2.0])
    with pytest.raises(ValueError, match="log_fields"):
        ObjectRegressionTask("p", D, fields=["pt"], log_fields=["energy"])


def test_classification_cost_is_the_negative_log_likelihood_of_the_target_class():
    task = ObjectClassificationTask("c", D, num_classes=3, field="label")
    logits = torch.randn(1, 4, 3)
    labels = torch.tensor([[2, 0]])
    cost = task.cost({"logits": logits}, {"particle_label": labels})
    for q in range(4):
        for t in range(2):
            expected = F.cross_entropy(logits[0, q : q + 1], labels[0, t : t + 1])
            torch.testing.assert_close(cost[0, q, t], expected)
    with pytest.raises(ValueError, match="class_weights"):
        ObjectClassificationTask("c", D, num_classes=3, class_weights=[1.0, 2.0])


def test_valid_task_cost_prefers_confident_queries_and_loss_targets_the_matching():
    task = ObjectValidTask("v", D)
    logit = torch.tensor([[4.0, -4.0]])
    cost = task.cost({"logit": logit}, {"particle_valid": torch.ones(1, 3, dtype=torch.bool)})
    assert cost.shape == (1, 2, 3) and (cost[0, 0] < cost[0, 1]).all()
    aligned = {"query_valid": torch.ones(1, 2, dtype=torch.bool)}
    good = task.loss({"logit": logit}, aligned, torch.tensor([[True, False]]), {})["bce"]
    bad = task.loss({"logit": logit}, aligned, torch.tensor([[False, True]]), {})["bce"]
    assert good < 0.05 < bad


def test_filter_loss_ignores_padding_and_predict_applies_the_threshold():
    task = ConstituentClassificationTask("f", D, threshold=0.7)
    logit = torch.tensor([[3.0, -3.0, 100.0]])
    batch = {
        "hit_on_target": torch.tensor([[True, False, False]]),
        "hit_valid": torch.tensor([[True, True, False]]),
    }
    assert task.loss({"logit": logit}, batch)["bce"] < 0.05  # the padded, very wrong hit does not count
    assert task.predict({"logit": torch.tensor([0.0, 1.0])})["keep"].tolist() == [False, True]
    with pytest.raises(ValueError, match="hinge"):
        ConstituentClassificationTask("f", D, losses={"hinge": 1.0})


def test_distance_similarity_is_highest_for_the_nearest_direction_and_ignores_scale():
    q = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    x = torch.tensor([[[2.0, 0.1], [3.0, 2.9], [-1.0, 0.0]]])
    similarity = DistanceSimilarity(init_scale=10.0, init_bias=1.0)
    logits = similarity(q, x)
    assert logits[0].argmax(-1).tolist() == [0, 1]
    torch.testing.assert_close(similarity(7.0 * q, 0.01 * x), logits)
    at_itself = similarity(q, q)  # a query on a constituent's own embedding: distance 0, logit = bias
    torch.testing.assert_close(at_itself.diagonal(dim1=1, dim2=2), torch.ones(1, 2))
    assert logits[0, 0, 2].item() == pytest.approx(1.0 - 10.0 * 4.0)  # opposite direction: distance^2 = 4


def test_shared_embedding_centres_a_seeded_query_on_its_seed():
    torch.manual_seed(0)
    task = ObjectMaskTask("mask", 16, similarity="distance", shared_embed=True)
    x = torch.randn(1, 30, 16)
    logits = task.mask_logits(x[:, [4, 17]], x)
    assert logits[0].argmax(-1).tolist() == [4, 17]


def test_mask_task_rejects_unknown_names():
    with pytest.raises(ValueError, match="similarity"):
        ObjectMaskTask("m", D, similarity="cosine")
    with pytest.raises(ValueError, match="costs"):
        ObjectMaskTask("m", D, costs={"iou": 1.0})


def test_mask_quality_target_is_the_iou_of_each_query_mask_with_its_target():
    task = ObjectMaskTask("m", D, quality_weight=2.0)
    logit = torch.tensor([[[3.0, 2.0, -1.0, -1.0], [1.0, 1.0, 1.0, 1.0], [1.0, -1.0, -1.0, -1.0]]])
    target = torch.tensor([[[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]], dtype=torch.bool)
    logit = torch.cat([logit, logit[:, :1]], 1)  # a 4th query, padding
    target = torch.cat([target, target[:, :1]], 1)
    matched = torch.tensor([[True, True, False, False]])
    valid = torch.tensor([[True, True, True, False]])  # the 4th hit is padding
    outputs = {"logit": logit, "quality_logit": torch.tensor([[0.5, -0.2, 1.0, 3.0]])}
    aligned = {"particle_hit_valid": target, "query_valid": torch.tensor([[True, True, True, False]])}
    batch = {"hit_valid": valid}
    # query 0: exact mask; query 1: 2 of its 3 real hits are the target's; query 2: unmatched
    iou = torch.tensor([[1.0, 2.0 / 3.0, 0.0]])
    expected = 2.0 * F.binary_cross_entropy_with_logits(outputs["quality_logit"][:, :3], iou)
    torch.testing.assert_close(task.loss(outputs, aligned, matched, batch)["quality"], expected)
    assert set(task.predict(outputs)) == {"logit", "mask", "quality"}


def test_mask_task_without_quality_weight_has_no_quality_head():
    task = ObjectMaskTask("m", D)
    assert task.quality_head is None
    assert set(task(torch.randn(1, 2, D), torch.randn(1, 5, D))) == {"logit"}
