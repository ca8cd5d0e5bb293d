"""autograder.evaluation: the reference evaluator against independent definitions."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from autograder import evaluation
from autograder.evaluation import full_ranking_ap, pr_curve, top_k
from autograder.labs.lab1_retrieval.reference import distances, evaluate_AP, evaluate_mAP
from labtools.data import digits_dataset
from labtools.models import ConvNet


def random_embedding(n=300, d=16, classes=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    features = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
    return features, torch.randint(classes, (n,), generator=g)


def tied_embedding(n=200, classes=5, seed=0):
    """n rows drawn from the 24 vertices of the 24-cell, (+-1, 0, 0, 0) and (+-1/2, +-1/2, +-1/2, +-1/2)
    up to order: every distance is an exact integer 0..4 however it is computed, so ties abound."""
    axes = torch.cat([torch.eye(4), -torch.eye(4)])
    halves = torch.tensor([[(s >> k & 1) - 0.5 for k in range(4)] for s in range(16)])
    vertices = torch.cat([axes, halves])
    g = torch.Generator().manual_seed(seed)
    return vertices[torch.randint(24, (n,), generator=g)], torch.randint(classes, (n,), generator=g)


def exact_embedding(n=200, classes=5, seed=0):
    """Rows v / 2048, v integer with |v| within 5e-4 of 2048: every product and distance is exact in
    float32 however the product is blocked. Rows 1 and 2 copy row 0: a three-way tie for every query."""
    g = torch.Generator().manual_seed(seed)
    v = (torch.nn.functional.normalize(torch.randn(2 * n, 4, generator=g), dim=1) * 2048).round()
    features = v[(v.norm(dim=1) / 2048 - 1).abs() < 5e-4][:n] / 2048
    features[1:3] = features[0]
    return features, torch.randint(classes, (n,), generator=g)


def untie_results(monkeypatch):
    """Record what evaluation._untie returns: True where it fixed ties, False where int64 keys took over."""
    results, untie = [], evaluation._untie
    monkeypatch.setattr(evaluation, "_untie", lambda *args: results.append(untie(*args)) or results[-1])
    return results


def brute_force_ap(features, labels):
    """Per-query AP written out plainly: sort the others by (distance, index), walk down the ranking."""
    dist = distances(features, features).tolist()
    labels = labels.tolist()
    aps = []
    for q in range(len(labels)):
        ranking = sorted((dist[q][j], j) for j in range(len(labels)) if j != q)
        hits, total = 0, 0.0
        for rank, (_, j) in enumerate(ranking, start=1):
            if labels[j] == labels[q]:
                hits += 1
                total += hits / rank
        aps.append(total / hits if hits else 0.0)
    return torch.tensor(aps, dtype=torch.float64)


def has_mixed_ties(features, labels):
    """True when some query has a relevant and an irrelevant item at exactly the same distance."""
    dist = distances(features, features)
    same = labels[:, None] == labels[None, :]
    for q in range(len(labels)):
        positives = set(dist[q][same[q]].tolist())
        if positives & set(dist[q][~same[q]].tolist()):
            return True
    return False


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
    dist = 2 - 2 * features[[3, 7]] @ features.T
    dist[[0, 1], [3, 7]] = float("inf")
    assert torch.equal(nearest, dist.argsort(dim=1, stable=True)[:, :5])
    # duplicates of the query at distance 0 with lower indices rank before it; it is still left out
    twins = torch.cat([features[:1].repeat(3, 1), features[1:]])
    dist = 2 - 2 * twins[2] @ twins.T
    dist[2] = float("inf")
    assert top_k(twins, torch.tensor([2]), k=3)[0].tolist() == dist.argsort(stable=True)[:3].tolist()
    assert dist.argsort(stable=True)[:2].tolist() == [0, 1]


@pytest.mark.parametrize("features, labels, error, match", [
    (torch.ones(5, 2), torch.zeros(5, dtype=torch.long), ValueError, "L2-normalized"),
    (torch.full((3, 2), float("nan")), torch.zeros(3, dtype=torch.long), ValueError, "NaN"),
    (torch.ones(3), torch.zeros(3, dtype=torch.long), ValueError, r"shape \[N, D\]"),
    (torch.ones(0, 4), torch.zeros(0, dtype=torch.long), ValueError, r"N >= 1, got \(0, 4\)"),
    (torch.eye(3), torch.zeros(4, dtype=torch.long), ValueError, r"labels must have shape \[3\]"),
    (torch.eye(3), torch.zeros(3), TypeError, "integer"),
    (torch.eye(3, dtype=torch.long), torch.zeros(3, dtype=torch.long), TypeError, "floating point"),
])
def test_bad_embeddings_are_refused(features, labels, error, match):
    with pytest.raises(error, match=match):
        full_ranking_ap(features, labels)
    with pytest.raises(error, match=match):
        pr_curve(features, labels)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equals_brute_force_without_ties(dtype):
    features, labels = random_embedding(n=150)
    features = features.to(dtype)
    assert torch.allclose(full_ranking_ap(features, labels), brute_force_ap(features, labels), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_equals_brute_force_with_ties_broken_by_index(dtype):
    features, labels = tied_embedding()
    features = features.to(dtype)
    assert has_mixed_ties(features, labels)
    assert torch.allclose(full_ranking_ap(features, labels), brute_force_ap(features, labels), rtol=0, atol=1e-12)


def test_ties_follow_the_item_index():
    # four identical items: query 0 sees 1 (class 1), 2 (class 0), 3 (class 0) all at distance 0.
    features = torch.nn.functional.normalize(torch.ones(4, 2), dim=1)
    ap = full_ranking_ap(features, torch.tensor([0, 1, 0, 0]))
    assert ap[0].item() == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert ap[2].item() == pytest.approx((1 / 1 + 2 / 3) / 2)  # ranking 0, 1, 3


@pytest.mark.parametrize("chunk_rows", [1, 7, 64])
def test_chunk_boundaries_do_not_change_the_result(monkeypatch, chunk_rows):
    features, labels = tied_embedding(n=130)
    expected = brute_force_ap(features, labels)
    monkeypatch.setattr(evaluation, "CHUNK_ELEMENTS", 130 * chunk_rows + 5)
    assert torch.allclose(full_ranking_ap(features, labels), expected, rtol=0, atol=1e-12)


def test_queries_without_relevant_items_score_zero():
    features, labels = random_embedding(n=100, classes=4)
    labels[:3] = torch.tensor([10, 11, 12])  # three classes of one item each
    ap = full_ranking_ap(features, labels)
    assert ap[:3].tolist() == [0.0, 0.0, 0.0]
    assert torch.allclose(ap, brute_force_ap(features, labels), rtol=0, atol=1e-12)


def test_equals_scikit_learn_on_every_query_of_tie_free_data():
    features, labels = random_embedding(n=200, d=32, classes=6, seed=3)
    dist = distances(features, features).numpy()
    expected = [average_precision_score(labels.numpy()[others] == labels[q].item(), -dist[q, others])
                for q in range(200) for others in [np.arange(200) != q]]
    assert np.allclose(full_ranking_ap(features, labels).numpy(), expected, rtol=0, atol=1e-12)


def test_pr_curve_breaks_ties_by_index_like_the_lab_reference():
    features, labels = tied_embedding(n=60)
    recall, precision = pr_curve(features, labels, num_queries=12)
    dist = distances(features, features)
    curves = [evaluate_AP(dist[q, torch.arange(60) != q], labels[torch.arange(60) != q], labels[q]) for q in range(12)]
    assert torch.allclose(precision, torch.stack([c[1] for c in curves]).mean(0), rtol=0, atol=1e-12)
    assert torch.allclose(recall, torch.stack([c[2] for c in curves]).mean(0), rtol=0, atol=1e-12)


@pytest.mark.parametrize("chunk_rows, num_queries", [(1, 60), (7, 60), (7, 25), (64, None)])
def test_pr_curve_in_chunks_of_bounded_size_is_the_mean_over_the_queries(monkeypatch, chunk_rows, num_queries):
    features, labels = tied_embedding(n=60)
    dist = distances(features, features)
    q = num_queries or 60
    curves = [evaluate_AP(dist[i, torch.arange(60) != i], labels[torch.arange(60) != i], labels[i]) for i in range(q)]
    monkeypatch.setattr(evaluation, "CHUNK_ELEMENTS", 60 * chunk_rows + 5)
    sorted_rows = []
    sorted_keys = evaluation._sorted_keys
    monkeypatch.setattr(evaluation, "_sorted_keys", lambda dist, *rest, **kw: sorted_rows.append(len(dist))
                        or sorted_keys(dist, *rest, **kw))
    recall, precision = pr_curve(features, labels, num_queries=num_queries)
    assert max(sorted_rows) == min(chunk_rows, q) and sum(sorted_rows) == q  # never more rows at once
    assert torch.allclose(precision, torch.stack([c[1] for c in curves]).mean(0), rtol=0, atol=1e-12)
    assert torch.allclose(recall, torch.stack([c[2] for c in curves]).mean(0), rtol=0, atol=1e-12)


@pytest.mark.parametrize("num_queries", [0, -1, 61, 2.5, True, "10"])
def test_pr_curve_refuses_a_number_of_queries_out_of_range(num_queries):
    features, labels = random_embedding(n=60)
    with pytest.raises(ValueError, match="num_queries must be an integer from 1 to 60"):
        pr_curve(features, labels, num_queries=num_queries)


def test_int32_keys_with_ties_put_back_in_index_order(monkeypatch):
    features, labels = exact_embedding()
    labels[:3] = torch.tensor([0, 1, 0])  # for class 0 queries the tie reads relevant, irrelevant, relevant
    assert has_mixed_ties(features, labels)
    expected = brute_force_ap(features, labels)
    untied = untie_results(monkeypatch)
    assert torch.allclose(full_ranking_ap(features, labels), expected, rtol=0, atol=1e-12)
    assert untied and all(untied)
    monkeypatch.setattr(evaluation, "_untie", lambda *args: True)  # ties left as the int32 sort put them
    assert not torch.allclose(full_ranking_ap(features, labels), expected, rtol=0, atol=1e-6)


def test_many_ties_switch_to_int64_keys(monkeypatch):
    features, labels = tied_embedding()
    untied = untie_results(monkeypatch)
    assert torch.allclose(full_ranking_ap(features, labels), brute_force_ap(features, labels), rtol=0, atol=1e-12)
    assert untied and not any(untied)
