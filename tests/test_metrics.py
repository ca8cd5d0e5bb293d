"""The metrics provided to Lab 4 (labtools.metrics: R-precision, MAP@R) against the definition, loop by
loop, and pytorch-metric-learning's AccuracyCalculator. The data are random floats: no two distances tie.
"""

import pytest
import torch

from labtools.metrics import map_at_r, r_precision


def unit_rows(n, d=16, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)


def random_labels(n, classes, seed=0):
    return torch.randint(classes, (n,), generator=torch.Generator().manual_seed(seed))


def accuracy_calculator():
    calculators = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    return calculators.AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"), device=torch.device("cpu"))


def loop_r_metrics(features, labels):
    dist = ((features[:, None, :] - features[None, :, :]) ** 2).sum(dim=2)
    labels = labels.tolist()
    r_precisions, average_precisions = [], []
    for q in range(len(labels)):
        others = [j for j in dist[q].argsort(stable=True).tolist() if j != q]
        r = sum(labels[j] == labels[q] for j in others)
        if r == 0:
            continue
        relevant = [float(labels[j] == labels[q]) for j in others[:r]]
        r_precisions.append(sum(relevant) / r)
        average_precisions.append(sum(rel * sum(relevant[:i + 1]) / (i + 1) for i, rel in enumerate(relevant)) / r)
    return sum(r_precisions) / len(r_precisions), sum(average_precisions) / len(average_precisions)


def test_r_precision_and_map_at_r_equal_the_definition_and_pytorch_metric_learning():
    features, labels = unit_rows(250, seed=9, dtype=torch.float32), random_labels(250, 15, seed=9)
    labels[:2] = torch.tensor([100, 101])  # singletons, left out by both
    expected_r, expected_map = loop_r_metrics(features.double(), labels)
    theirs = accuracy_calculator().get_accuracy(features, labels)
    assert r_precision(features, labels) == pytest.approx(expected_r, abs=1e-6)
    assert r_precision(features, labels) == pytest.approx(theirs["r_precision"], abs=1e-9)
    assert map_at_r(features, labels) == pytest.approx(expected_map, abs=1e-6)
    assert map_at_r(features, labels) == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-9)
