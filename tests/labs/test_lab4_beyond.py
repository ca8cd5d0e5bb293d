"""Lab 4, beyond: the reference metrics and losses (autograder.labs.lab4_beyond.reference), each against
an independent implementation: loops over the definition, scikit-learn and pytorch-metric-learning
(its AccuracyCalculator, its losses with the weights copied between the two); and Lab 4 notebooks
graded in the sandbox. The data are random floats: no two distances tie.

pytorch-metric-learning's conventions for the graded losses, read in its source (losses/*.py; the
others are in tests/test_losses.py): every loss averages over the batch (``MeanReducer``); class
weights are ``W`` [D, C] (a column per class) in ``NormalizedSoftmaxLoss`` and ``ArcFaceLoss``, ours
[C, D]; embeddings and weights are L2-normalized inside (``normalize_embeddings=True`` by default);
``ArcFaceLoss(margin=28.6, scale=64)``: margin in degrees (converted with ``np.radians``), ours in
radians, and past theta + m > pi it uses cos(theta) - m sin(m), as we do;
``NormalizedSoftmaxLoss(temperature=0.05)`` divides the cosines by the temperature, as we do.
"""

import inspect
import math
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import torch

from autograder.labs.lab4_beyond import reference as lab4
from autograder.labs.lab4_beyond.reference import (
    NormSoftmax, arcface_loss, f1, kmeans, nmi, norm_softmax_loss, precision_at_1, recall_at_k,
)
from labtools.checks import loop_violations

sys.path.insert(0, str(Path(__file__).parents[1] / "submissions"))
sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/: loss_comparison
import build  # noqa: E402
from loss_comparison import B, C, D, batch, same_loss_and_gradients, true_cosines  # noqa: E402

LAB = "lab4_beyond"
MISTAKES = build.mistakes(LAB)

KS = (1, 2, 4, 8, 16, 32)


def unit_rows(n, d=16, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)


def random_labels(n, classes, seed=0):
    return torch.randint(classes, (n,), generator=torch.Generator().manual_seed(seed))


def blobs(classes=5, per_class=20, d=8, spread=0.05, seed=0):
    """Well-separated clusters: a random center per class plus small noise, labels by class."""
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.eye(d, dtype=torch.float64)[:classes]
    labels = torch.arange(classes).repeat_interleave(per_class)
    features = centers[labels] + spread * torch.randn(classes * per_class, d, generator=g, dtype=torch.float64)
    order = torch.randperm(len(labels), generator=g)
    return features[order], labels[order]


def accuracy_calculator():
    calculators = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    return calculators.AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"), device=torch.device("cpu"))


# ----------------------------------------------------------------------------- Recall@K


def loop_recall(features, labels, ks):
    """The definition, query by query: hit at K when one of the K nearest others has the label."""
    dist = ((features[:, None, :] - features[None, :, :]) ** 2).sum(dim=2)
    labels = labels.tolist()
    hits = {k: [] for k in ks}
    for q in range(len(labels)):
        others = [j for j in dist[q].argsort(stable=True).tolist() if j != q]
        if not any(labels[j] == labels[q] for j in others):
            continue
        for k in ks:
            hits[k].append(any(labels[j] == labels[q] for j in others[:k]))
    return {k: sum(h) / len(h) for k, h in hits.items()}


def recall_with_the_query(features, labels, ks):
    """Deliberately wrong: the query ranks among its own neighbours."""
    dist = ((features[:, None, :] - features[None, :, :]) ** 2).sum(dim=2)
    order = dist.argsort(dim=1, stable=True)
    return {k: (labels[order[:, :k]] == labels[:, None]).any(dim=1).double().mean().item() for k in ks}


@pytest.mark.parametrize("n,classes,seed", [(120, 4, 0), (200, 30, 1), (64, 64 // 3, 2)])
def test_recall_equals_the_definition(n, classes, seed):
    features, labels = unit_rows(n, seed=seed), random_labels(n, classes, seed)
    expected = loop_recall(features, labels, KS)
    assert recall_at_k(features, labels, KS) == pytest.approx(expected, abs=1e-12)
    single = recall_at_k(features.float(), labels)
    assert list(single) == list(KS) and single == pytest.approx(expected, abs=1e-6)
    wrong = recall_with_the_query(features, labels, KS)
    assert wrong[1] == 1.0 and abs(wrong[1] - expected[1]) > 0.1  # the check above tells them apart


def test_recall_equals_scikit_learn_neighbours():
    """scikit-learn's exact k-NN (Euclidean distance: the same order) finds the K nearest others
    (n_neighbors=K with X=None leaves each point out of its own neighbours)."""
    neighbors = pytest.importorskip("sklearn.neighbors")
    features, labels = unit_rows(150, seed=3), random_labels(150, 12, seed=3)
    has_positive = (labels[:, None] == labels[None, :]).sum(dim=1) > 1
    index = torch.from_numpy(neighbors.NearestNeighbors(n_neighbors=max(KS)).fit(features.numpy()).kneighbors()[1])
    hit = (labels[index] == labels[:, None])[has_positive]  # [M, 32]
    expected = {k: hit[:, :k].any(dim=1).double().mean().item() for k in KS}
    assert recall_at_k(features, labels) == pytest.approx(expected, abs=1e-12)


def test_recall_at_1_is_leave_one_out_precision_at_1_of_pytorch_metric_learning():
    """AccuracyCalculator with reference=None ranks each query against the others
    (ref_includes_query) and, like recall_at_k, leaves out queries whose label no other item has."""
    features, labels = unit_rows(300, seed=4, dtype=torch.float32), random_labels(300, 40, seed=4)
    labels[:3] = torch.tensor([100, 101, 102])  # three singletons
    theirs = accuracy_calculator().get_accuracy(features, labels)
    assert recall_at_k(features, labels, (1,))[1] == pytest.approx(theirs["precision_at_1"], abs=1e-9)


def test_recall_ties_with_the_nearest_positive_count_for_it():
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [-0.6, -0.8]])
    labels = torch.tensor([0, 1, 0, 2])
    # query 0 has item 1 (a negative) and item 2 (its positive) both at distance 2: a hit at K = 1;
    # query 2 has item 3 (a negative) nearer than its positive: a hit at K = 2 only
    assert recall_at_k(features, labels, (1, 2)) == {1: 0.5, 2: 1.0}


# ----------------------------------------------------------------------------- Precision@1


def loop_precision(query, query_labels, ref, ref_labels, n):
    dist = ((query[:, None, :] - ref[None, :, :]) ** 2).sum(dim=2)
    correct = 0
    for q in range(len(query)):
        votes = ref_labels[dist[q].argsort(stable=True)[:n]].tolist()
        counts = Counter(votes)
        best = max(counts.values())
        predicted = next(v for v in votes if counts[v] == best)  # the nearest of the most voted
        correct += predicted == query_labels[q].item()
    return correct / len(query)


@pytest.mark.parametrize("n", [1, 3, 4, 10])
def test_precision_equals_the_definition(n):
    query, ref = unit_rows(80, d=6, seed=5), unit_rows(300, d=6, seed=6)
    query_labels, ref_labels = random_labels(80, 5, seed=5), random_labels(300, 5, seed=6)
    expected = loop_precision(query, query_labels, ref, ref_labels, n)
    assert precision_at_1(query, query_labels, ref, ref_labels, n=n) == pytest.approx(expected, abs=1e-12)


def test_precision_ties_between_labels_go_to_the_nearest():
    query = torch.tensor([[1.0, 0.0]])
    angles = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    ref = torch.stack([angles.cos(), angles.sin()], dim=1)  # increasingly far from the query
    assert precision_at_1(query, torch.tensor([7]), ref, torch.tensor([7, 3, 3, 7, 5]), n=4) == 1.0
    assert precision_at_1(query, torch.tensor([3]), ref, torch.tensor([7, 3, 3, 7, 5]), n=4) == 0.0
    assert precision_at_1(query, torch.tensor([3]), ref, torch.tensor([7, 3, 5, 3, 7]), n=4) == 1.0  # 3 has two votes


def test_precision_at_1_equals_pytorch_metric_learning():
    query, ref = unit_rows(200, seed=7, dtype=torch.float32), unit_rows(500, seed=8, dtype=torch.float32)
    query_labels, ref_labels = random_labels(200, 10, seed=7), random_labels(500, 10, seed=8)
    theirs = accuracy_calculator().get_accuracy(query, query_labels, ref, ref_labels)
    ours = precision_at_1(query, query_labels, ref, ref_labels)
    assert ours == pytest.approx(theirs["precision_at_1"], abs=1e-9)


# ----------------------------------------------------------------------------- k-means, NMI, F1


def inertia(features, assignments):
    one_hot = torch.nn.functional.one_hot(assignments).to(features.dtype)
    centers = one_hot.T @ features / one_hot.sum(dim=0)[:, None].clamp_min(1)
    return ((features - centers[assignments]) ** 2).sum().item()


@pytest.fixture
def one_thread():
    """scikit-learn's k-means on one thread: on a busy two-core machine OpenMP threads wait on each other."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        yield


def test_kmeans_finds_well_separated_clusters_like_scikit_learn(one_thread):
    cluster = pytest.importorskip("sklearn.cluster")
    from sklearn.metrics import adjusted_rand_score

    features, labels = blobs(seed=10)
    ours = kmeans(features, 5, seed=0)
    theirs = cluster.KMeans(5, n_init=10, random_state=0).fit(features.numpy())
    assert adjusted_rand_score(labels.numpy(), ours.numpy()) == 1.0
    assert adjusted_rand_score(theirs.labels_, ours.numpy()) == 1.0
    assert inertia(features, ours) == pytest.approx(theirs.inertia_, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_converges_to_a_good_local_minimum(seed, one_thread):
    cluster = pytest.importorskip("sklearn.cluster")
    features = unit_rows(300, d=8, seed=seed)
    ours = kmeans(features, 10, seed=seed)
    assert torch.equal(ours, kmeans(features, 10, seed=seed))  # seeded
    assert ours.unique().tolist() == list(range(10))
    # a fixed point of Lloyd's steps: started from our centers, scikit-learn changes nothing
    one_hot = torch.nn.functional.one_hot(ours).double()
    centers = (one_hot.T @ features / one_hot.sum(dim=0)[:, None]).numpy()
    refit = cluster.KMeans(10, init=centers, n_init=1).fit(features.numpy())
    assert (refit.labels_ == ours.numpy()).all()
    best = cluster.KMeans(10, n_init=10, random_state=seed).fit(features.numpy())
    assert inertia(features, ours) <= 1.05 * best.inertia_


@pytest.mark.parametrize("num_clusters", [None, 3, 12])
@pytest.mark.parametrize("seed", [0, 1])
def test_nmi_equals_scikit_learn_on_the_same_clusters(num_clusters, seed):
    metrics = pytest.importorskip("sklearn.metrics")
    features, labels = unit_rows(200, d=8, seed=seed), random_labels(200, 6, seed=seed) * 10  # labels 0, 10, ..., 50
    clusters = kmeans(features, num_clusters or 6, seed=seed)
    expected = metrics.normalized_mutual_info_score(labels.numpy(), clusters.numpy())
    assert nmi(features, labels, num_clusters, seed) == pytest.approx(expected, abs=1e-12)
    by_max = metrics.normalized_mutual_info_score(labels.numpy(), clusters.numpy(), average_method="max")
    assert abs(by_max - expected) > 1e-6  # another normalization would fail the check above


def test_nmi_is_one_on_well_separated_clusters_as_in_pytorch_metric_learning():
    calculators = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    features, labels = blobs(seed=11)
    assert nmi(features, labels) == pytest.approx(1.0, abs=1e-12)
    theirs = calculators.AccuracyCalculator(include=("NMI",), device=torch.device("cpu")).get_accuracy(
        features.float(), labels)
    assert theirs["NMI"] == pytest.approx(1.0, abs=1e-9)
    assert nmi(features[:1].repeat(4, 1), torch.zeros(4, dtype=torch.long)) == 1.0  # one class, one cluster


def loop_f1(labels, clusters):
    both = same_label = same_cluster = 0
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            label, cluster = labels[i] == labels[j], clusters[i] == clusters[j]
            both, same_label, same_cluster = both + (label and cluster), same_label + label, same_cluster + cluster
    precision, recall = both / same_cluster, both / same_label
    return 2 * precision * recall / (precision + recall)


def f1_with_ordered_pairs(labels, clusters):
    """Deliberately wrong: counts every item as paired with itself, n^2 instead of n(n-1)/2."""
    table = torch.zeros(int(labels.max()) + 1, int(clusters.max()) + 1).index_put_(
        (labels, clusters), torch.tensor(1.0), accumulate=True)
    return (2 * (table ** 2).sum() / ((table.sum(1) ** 2).sum() + (table.sum(0) ** 2).sum())).item()


@pytest.mark.parametrize("num_clusters", [None, 4, 9])
def test_f1_equals_pair_counts_and_scikit_learn(num_clusters):
    metrics = pytest.importorskip("sklearn.metrics.cluster")
    features, labels = unit_rows(120, d=6, seed=12), random_labels(120, 6, seed=12)
    clusters = kmeans(features, num_clusters or 6, seed=0)
    expected = loop_f1(labels.tolist(), clusters.tolist())
    assert f1(features, labels, num_clusters) == pytest.approx(expected, abs=1e-12)
    pairs = metrics.pair_confusion_matrix(labels.numpy(), clusters.numpy())  # ordered pairs [[TN, FP], [FN, TP]]
    precision = pairs[1, 1] / (pairs[1, 1] + pairs[0, 1])
    recall = pairs[1, 1] / (pairs[1, 1] + pairs[1, 0])
    from_pairs = 2 * precision * recall / (precision + recall)
    assert f1(features, labels, num_clusters) == pytest.approx(from_pairs, abs=1e-12)
    assert abs(f1_with_ordered_pairs(labels, clusters) - expected) > 1e-3  # the check can fail


def test_f1_is_one_on_well_separated_clusters():
    features, labels = blobs(seed=13)
    assert f1(features, labels) == pytest.approx(1.0, abs=1e-12)
    assert f1(features, labels, num_clusters=10) < 0.8  # classes split: recall drops


# ----------------------------------------------------------------------------- NormSoftmax, ArcFace


@pytest.fixture
def pml_losses():
    return pytest.importorskip("pytorch_metric_learning.losses")


@pytest.mark.parametrize("temperature", [0.05, 0.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_norm_softmax_loss_equals_pytorch_metric_learning(temperature, seed, pml_losses):
    features, labels, weight = batch(seed)
    theirs = pml_losses.NormalizedSoftmaxLoss(C, D, temperature=temperature)
    theirs.W.data = weight.T.clone()  # [D, C]
    same_loss_and_gradients(lambda f, w: norm_softmax_loss(f, labels, w, temperature), lambda f: theirs(f, labels),
                            features, weight, lambda: theirs.W.grad.T)


@pytest.mark.parametrize("margin", [0.5, 0.2])
@pytest.mark.parametrize("seed", [0, 1])
def test_arcface_loss_equals_pytorch_metric_learning(margin, seed, pml_losses):
    features, labels, weight = batch(seed)
    noise = torch.randn(4, D, generator=torch.Generator().manual_seed(seed + 20), dtype=torch.float64)
    features[:4] = -weight[labels[:4]] + 0.05 * noise  # theta near pi
    assert (true_cosines(features, labels, weight[:, None]) < -math.cos(margin)).sum() >= 4  # past pi - margin
    theirs = pml_losses.ArcFaceLoss(C, D, margin=math.degrees(margin), scale=64)  # degrees
    theirs.W.data = weight.T.clone()
    same_loss_and_gradients(lambda f, w: arcface_loss(f, labels, w, margin), lambda f: theirs(f, labels),
                            features, weight, lambda: theirs.W.grad.T)


def arcface_with_margin_everywhere(features, labels, weight, margin=0.5, scale=64.0):
    """Deliberately wrong: the margin added to every class's angle, not only the true one's."""
    cos = torch.nn.functional.normalize(features, dim=1) @ torch.nn.functional.normalize(weight, dim=1).T
    return torch.nn.functional.cross_entropy(scale * torch.cos(torch.acos(cos.clamp(-1, 1)) + margin), labels)


def test_arcface_checks_can_fail_and_margin_zero_is_norm_softmax(pml_losses):
    features, labels, weight = batch(2)
    theirs = pml_losses.ArcFaceLoss(C, D, scale=64)  # the default margin, 28.6 degrees
    theirs.W.data = weight.T.clone()
    expected = theirs(features, labels).item()
    in_radians = arcface_loss(features, labels, weight, margin=math.radians(28.6)).item()
    assert in_radians == pytest.approx(expected, rel=1e-10)
    assert abs(arcface_loss(features, labels, weight, margin=0.5).item() - expected) > 1e-3  # 28.6 deg is not 0.5 rad
    assert abs(arcface_with_margin_everywhere(features, labels, weight).item() - expected) > 1.0
    assert arcface_loss(features, labels, weight, margin=0.0, scale=20.0).item() == pytest.approx(
        norm_softmax_loss(features, labels, weight, temperature=0.05).item(), rel=1e-12)


def test_norm_softmax_head(pml_losses):
    torch.manual_seed(0)
    head = NormSoftmax(in_features=32, num_classes=C, embedding_dim=D)
    assert head.temperature == 0.05 and head.weight.shape == (C, D)
    assert [m.out_features for m in head.modules() if isinstance(m, torch.nn.Linear)] == [D]  # no linear classifier
    x = torch.randn(B, 32)
    features = head(x)
    assert features.shape == (B, D) and torch.allclose(features.norm(dim=1), torch.ones(B))
    assert torch.allclose(head(3 * x + 1), features, atol=1e-5)  # layer-normalized: each row's scale and shift drop out
    assert NormSoftmax(32, C)(x).shape == (B, 32)  # no projection
    theirs = pml_losses.NormalizedSoftmaxLoss(C, D, temperature=head.temperature)
    theirs.W.data = head.weight.detach().T.clone()
    assert norm_softmax_loss(features, torch.arange(B) % C, head.weight, head.temperature).item() == pytest.approx(
        theirs(features, torch.arange(B) % C).item(), rel=1e-5)


def test_norm_softmax_trains():
    torch.manual_seed(0)
    x, labels = torch.randn(64, 20), torch.arange(64) % 4
    head = NormSoftmax(20, 4, embedding_dim=8)
    history = []
    for _ in range(10):  # plain gradient descent, lr 0.1
        loss = norm_softmax_loss(head(x), labels, head.weight, head.temperature)
        head.zero_grad()
        loss.backward()
        with torch.no_grad():
            for parameter in head.parameters():
                parameter -= 0.1 * parameter.grad
        history.append(loss.item())
    assert history[-1] < 0.5 * history[0]


# ----------------------------------------------------------------------------- loop-free, bad inputs


@pytest.mark.parametrize("name", ["recall_at_k", "precision_at_1", "contingency_table", "nmi", "f1"])
def test_loop_free(name):
    problems = loop_violations(inspect.getsource(lab4), name)
    # k-means loops over its seeding steps and Lloyd iterations, nothing else
    assert all("(in the helper kmeans)" in problem for problem in problems), problems
    assert loop_violations(inspect.getsource(lab4), "kmeans", allowed_for=2) == []


ZEROS = {n: torch.zeros(n, dtype=torch.long) for n in (3, 4, 5)}


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: recall_at_k(torch.ones(4, 2).numpy(), ZEROS[4]), "features must be a torch tensor"),
        (lambda: recall_at_k(torch.ones(4), ZEROS[4]), "shape \\[N, D\\]"),
        (lambda: recall_at_k(torch.ones(4, 2, dtype=torch.long), ZEROS[4]), "float tensor"),
        (lambda: recall_at_k(torch.full((4, 2), float("nan")), ZEROS[4]), "NaN"),
        (lambda: recall_at_k(torch.ones(4, 2), ZEROS[4]), "L2-normalized"),
        (lambda: recall_at_k(unit_rows(4), ZEROS[3]), "integer \\[4\\]"),
        (lambda: recall_at_k(unit_rows(4), torch.zeros(4)), "integer \\[4\\]"),
        (lambda: recall_at_k(unit_rows(4), ZEROS[4], (1, 4)), "ks must be .* 1..3"),
        (lambda: recall_at_k(unit_rows(4), ZEROS[4], (1.5,)), "ks must be"),
        (lambda: recall_at_k(unit_rows(4), torch.arange(4), (1,)), "no item shares its label"),
        (lambda: precision_at_1(unit_rows(4), ZEROS[4], unit_rows(5, d=3), ZEROS[5]), "dimension"),
        (lambda: precision_at_1(unit_rows(4), ZEROS[4], unit_rows(5), ZEROS[5], n=6), "n must be .* 1..5"),
        (lambda: precision_at_1(unit_rows(4), ZEROS[4], unit_rows(5), ZEROS[4]), "ref_labels must be .* \\[5\\]"),
        (lambda: kmeans(unit_rows(4), 0), "num_clusters must be .* 1..4"),
        (lambda: kmeans(torch.ones(6, 2), 2), "num_clusters must be .* 1..1 \\(the distinct rows\\)"),
        (lambda: nmi(unit_rows(4), ZEROS[4], num_clusters=5), "num_clusters must be"),
        (lambda: f1(unit_rows(4), ZEROS[5]), "integer \\[4\\]"),
    ],
)
def test_wrong_inputs_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("name", ["norm_softmax_loss", "arcface_loss"])
def test_graded_losses_are_loop_free(name):
    assert loop_violations(inspect.getsource(lab4), name) == []


def test_norm_softmax_head_loop_free():
    for method in (NormSoftmax.__init__, NormSoftmax.forward):
        assert loop_violations(textwrap.dedent(inspect.getsource(method)), method.__name__) == []


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda f, y, w: norm_softmax_loss(f, y, w[:, :4]), "weight must be a float \\[C, D\\] tensor with D = 16"),
        (lambda f, y, w: norm_softmax_loss(f, y, w, temperature=0), "temperature must be positive"),
        (lambda f, y, w: norm_softmax_loss(f, y + C, w), "labels must lie in 0..6"),
        (lambda f, y, w: arcface_loss(f[:, :, None], y, w), "features must have shape \\[N, D\\]"),
        (lambda f, y, w: arcface_loss(f, y[:-1], w), "labels must be an integer \\[48\\]"),
        (lambda f, y, w: arcface_loss(f, y, w, margin=28.6), "margin must be in \\[0, pi/2\\) radians"),
        (lambda f, y, w: arcface_loss(f, y, w.long()), "weight must be a float"),
    ],
)
def test_wrong_inputs_to_the_losses_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call(*batch())


# ----------------------------------------------------------------------------- full mAP


def test_full_ranking_map_equals_pytorch_metric_learning_with_k_none():
    """The study's mAP (autograder.evaluation.full_ranking_ap, every item ranked) is
    AccuracyCalculator's mean_average_precision with k=None on tie-free data."""
    calculators = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    from autograder.evaluation import full_ranking_ap

    features, labels = unit_rows(300, seed=11, dtype=torch.float32), random_labels(300, 6, seed=11)
    theirs = calculators.AccuracyCalculator(include=("mean_average_precision",), k=None,
                                            device=torch.device("cpu")).get_accuracy(features, labels)
    assert full_ranking_ap(features, labels).mean().item() == pytest.approx(theirs["mean_average_precision"],
                                                                            abs=1e-6)


# ----------------------------------------------------------------------------- graded in the sandbox


@pytest.mark.parametrize("mistake, lost_checks", [
    (None, set()),
    ("head_without_layer_norm", MISTAKES["head_without_layer_norm"].lost),
    ("recall_loop", MISTAKES["recall_loop"].lost),
])
def test_lab4_notebook_submissions_are_extracted_and_graded(tmp_path, mistake, lost_checks):
    """A Lab 4 notebook: its NormSoftmax class cell and its helpers (kmeans, contingency_table) are
    extracted with the setup cell's imports; the reference earns 8.5 points, a mistake loses its checks."""
    from autograder.grading.trusted import grade_submission
    from labtools.checks.submission import extract_submission

    path = build.write_submission(tmp_path / "s", LAB, replace=build.mistake_code(LAB, mistake) if mistake else None)
    source = extract_submission(path, LAB)
    for definition in ("class NormSoftmax(nn.Module):", "def kmeans(", "def contingency_table(", "def distances("):
        assert definition in source
    assert "from labtools.neighbors" not in source and "epshn_triplet_loss" not in source  # refused imports left out
    result = grade_submission(path, LAB, workroot=tmp_path)
    lost = {c["check"] for c in result["checks"] if c["points"] < c["max_points"]}
    assert lost == lost_checks, {c["check"]: c["message"] for c in result["checks"] if c["check"] in lost}
    total = sum(c["points"] for c in result["checks"])
    assert total == pytest.approx(8.5 - sum(c["max_points"] for c in result["checks"] if c["check"] in lost_checks))
