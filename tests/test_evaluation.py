"""autograder.evaluation: the reference evaluator against independent definitions."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from autograder import evaluation
from autograder.evaluation import full_ranking_ap, pr_curve, top_k
from autograder.reference.lab1 import distances, evaluate_AP, evaluate_mAP
from labtools.data import digits_dataset
from labtools.models import ConvNet


def random_embedding(n=300, d=16, classes=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    features = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
    return features, torch.randint(classes, (n,), generator=g)


def test_matches_scikit_learn_per_query_on_tie_free_data():
    features, labels = random_embedding()
    ap = full_ranking_ap(features, labels)
    dist = distances(features, features).numpy()
    for q in range(0, 300, 17):
        others = np.arange(300) != q
        expected = average_precision_score(labels.numpy()[others] == labels[q].item(), -dist[q, others])
        assert ap[q].item() == pytest.approx(expected, abs=1e-9)


def test_chunking_does_not_change_the_result(monkeypatch):
    features, labels = random_embedding(n=257)
    whole = full_ranking_ap(features, labels)
    monkeypatch.setattr(evaluation, "CHUNK_ELEMENTS", 257 * 10)
    assert torch.equal(full_ranking_ap(features, labels), whole)


def test_agrees_with_the_lab_reference_evaluate_AP():
    features, labels = random_embedding(n=120)
    ap = full_ranking_ap(features, labels)
    dist = distances(features, features)
    for q in (0, 5, 119):
        others = torch.arange(120) != q
        assert ap[q].item() == pytest.approx(evaluate_AP(dist[q, others], labels[others], labels[q])[0].item())


def test_hand_worked_example_and_query_exclusion():
    # query 0 (class 0); others sorted by distance: 1 (class 0), 2 (class 1), 3 (class 0).
    features = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.1], [1.0, 0.5], [1.0, 1.0]]), dim=1)
    labels = torch.tensor([0, 0, 1, 0])
    assert full_ranking_ap(features, labels)[0].item() == pytest.approx((1 / 1 + 2 / 3) / 2)


def test_pr_curve_is_the_mean_of_the_per_query_curves():
    features, labels = random_embedding(n=80)
    recall, precision = pr_curve(features, labels, num_queries=10)
    assert recall.shape == precision.shape == (79,)
    assert recall[-1].item() == pytest.approx(1.0)
    dist = distances(features, features)
    curves = [evaluate_AP(dist[q, torch.arange(80) != q], labels[torch.arange(80) != q], labels[q]) for q in range(10)]
    assert torch.allclose(precision, torch.stack([c[1] for c in curves]).mean(0))


def test_evaluate_mAP_reference_agrees_with_the_evaluator():
    images, labels = digits_dataset().tensors
    dataset = torch.utils.data.TensorDataset(images[:200], labels[:200])
    torch.manual_seed(0)
    net = ConvNet().eval()
    mAP, precision, recall = evaluate_mAP(net, dataset, num_queries=20)
    features = net.features(images[:200]).detach()
    assert mAP == pytest.approx(full_ranking_ap(features, labels[:200])[:20].mean().item(), abs=1e-6)
    assert precision.shape == recall.shape == (199,)


def test_top_k_excludes_the_query():
    features, _ = random_embedding(n=50)
    nearest = top_k(features, torch.tensor([3, 7]), k=5)
    assert nearest.shape == (2, 5) and 3 not in nearest[0] and 7 not in nearest[1]


@pytest.mark.parametrize("features, labels, error, match", [
    (torch.ones(5, 2), torch.zeros(5, dtype=torch.long), ValueError, "L2-normalized"),
    (torch.full((3, 2), float("nan")), torch.zeros(3, dtype=torch.long), ValueError, "NaN"),
    (torch.ones(3), torch.zeros(3, dtype=torch.long), ValueError, r"shape \[N, D\]"),
    (torch.eye(3), torch.zeros(4, dtype=torch.long), ValueError, r"labels must have shape \[3\]"),
    (torch.eye(3), torch.zeros(3), TypeError, "integer"),
    (torch.eye(3, dtype=torch.long), torch.zeros(3, dtype=torch.long), TypeError, "floating point"),
])
def test_bad_embeddings_are_refused(features, labels, error, match):
    with pytest.raises(error, match=match):
        full_ranking_ap(features, labels)
