"""labtools.errors: the misclassified queries and their neighbours, per-class reports, on hand-built embeddings."""

import math

import numpy as np
import pytest
import torch

from labtools.errors import class_report, misclassified, nearest_labels


def at_degrees(*degrees):
    """Unit rows [N, 2] at the given angles."""
    angle = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([angle.cos(), angle.sin()], dim=1)


# class 0 at 0, 10, 22 degrees, class 1 at 90, 100, 115, class 2 at 180, 190; item 8 (class 1) strays to
# 14 degrees: it is the nearest other item of items 1 and 2, and its own nearest is item 1 (4 degrees).
# No two items are equally far from a third (float ties are left to rounding)
FEATURES = at_degrees(0, 10, 22, 90, 100, 115, 180, 190, 14)
LABELS = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 1])


def test_misclassified_queries_come_with_their_neighbours_and_classes():
    wrong = misclassified(FEATURES, LABELS, k=3)
    assert wrong.queries.tolist() == [1, 2, 8] and wrong.labels.tolist() == [0, 0, 1]
    assert wrong.neighbours.tolist() == [[8, 0, 2], [8, 1, 0], [1, 2, 0]]
    assert wrong.neighbour_labels.tolist() == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
    chord = lambda degrees: 2 - 2 * math.cos(math.radians(degrees))  # squared distance of unit rows
    torch.testing.assert_close(wrong.distances[2], torch.tensor([chord(4), chord(8), chord(14)], dtype=torch.float64))


def test_nearest_labels_leave_one_out_and_against_references():
    index, found = nearest_labels(FEATURES, LABELS, k=1)
    assert index[:, 0].tolist() == [1, 8, 8, 4, 3, 4, 7, 6, 1]
    assert found[:, 0].tolist() == [0, 1, 1, 1, 1, 1, 2, 2, 0]
    queries, query_labels = at_degrees(4, 94, 184, 135), torch.tensor([0, 1, 2, 2])
    index, found = nearest_labels(queries, query_labels, FEATURES, LABELS, k=2)
    assert index.tolist() == [[0, 1], [3, 4], [6, 7], [5, 4]] and found.tolist() == [[0, 0], [1, 1], [2, 2], [1, 1]]
    wrong = misclassified(queries, query_labels, FEATURES, LABELS, k=2)
    assert wrong.queries.tolist() == [3] and wrong.neighbour_labels.tolist() == [[1, 1]]
    assert wrong.distances[0, 0].item() == pytest.approx(2 - 2 * math.cos(math.radians(20)))


def test_class_report_of_a_known_prediction_for_seen_and_unseen_classes():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    predicted = torch.tensor([0, 1, 1, 1, 2, 0])
    reports = class_report(labels, predicted, subsets={"seen": range(2), "unseen": (2,)})
    seen, unseen = reports["seen"], reports["unseen"]
    assert seen["classes"] == [0, 1] and unseen["classes"] == [2] and seen["columns"] == [0, 1, 2]
    # seen queries 0-3: class 0 predicted 0, 1; class 1 predicted 1, 1
    assert seen["report"]["0"] == {"precision": 1.0, "recall": 0.5, "f1-score": pytest.approx(2 / 3), "support": 2.0}
    assert seen["report"]["1"]["precision"] == pytest.approx(2 / 3) and seen["report"]["1"]["recall"] == 1.0
    assert seen["confusion"].tolist() == [[1, 1, 0], [0, 2, 0]] and seen["confusion"].dtype == np.int64
    # unseen queries 4, 5: class 2 predicted 2 and 0 (a seen class)
    assert unseen["report"]["2"]["precision"] == 1.0 and unseen["report"]["2"]["recall"] == 0.5
    assert unseen["confusion"].tolist() == [[1, 0, 1]]
    every = class_report(labels.numpy(), predicted.tolist())
    assert list(every) == ["all"] and every["all"]["classes"] == [0, 1, 2]
    assert every["all"]["report"]["0"]["precision"] == 0.5  # query 5 of class 2 is predicted 0 too
    assert every["all"]["report"]["accuracy"] == pytest.approx(4 / 6)
    assert np.trace(every["all"]["confusion"]) == 4


def test_class_report_of_the_nearest_neighbours_of_the_hand_built_embedding():
    predicted = nearest_labels(FEATURES, LABELS, k=1)[1][:, 0]
    reports = class_report(LABELS, predicted, subsets={"seen": (0, 1), "unseen": (2, 3)})
    assert reports["seen"]["confusion"].tolist() == [[1, 2, 0, 0], [1, 3, 0, 0]]  # class 3: no query, no prediction
    assert reports["unseen"]["confusion"].tolist() == [[0, 0, 2, 0], [0, 0, 0, 0]]
    assert reports["unseen"]["report"]["3"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0.0}


@pytest.mark.parametrize("call, words", [
    (lambda: misclassified(FEATURES, LABELS, k=9), r"k must be an integer in 1..8 \(the items other than the query\)"),
    (lambda: misclassified(FEATURES, LABELS[:5]), r"labels must be an integer \[9\] tensor, got torch.int64 \[5\]"),
    (lambda: misclassified(FEATURES[:, 0], LABELS), r"features must have shape \[N, D\]"),
    (lambda: nearest_labels(FEATURES, LABELS, FEATURES), "give references and reference_labels together"),
    (lambda: nearest_labels(FEATURES, LABELS, at_degrees(0, 1), torch.tensor([0.0, 1.0])),
     r"reference_labels must be an integer \[2\] tensor"),
    (lambda: class_report([0, 1], [0]), "labels and predicted must hold one class per query, got 2 and 1"),
    (lambda: class_report([0.5, 1.0], [0, 1]), r"labels must be a non-empty 1-d sequence of integer class ids, got float64"),
    (lambda: class_report([0, 1], [0, 1], subsets={"unseen": (8, 9)}),
     r"subsets\['unseen'\] \(classes 8, 9\) has no query: the labels hold classes 0, 1"),
    (lambda: class_report([0, 1], [0, 1], subsets={"seen": 3}), r"subsets\['seen'\] must be a 1-d sequence"),
    (lambda: class_report([0, 1], [0, 1], subsets={}), "subsets must be a non-empty dict"),
])
def test_bad_input_is_refused_in_the_users_terms(call, words):
    with pytest.raises(ValueError, match=words):
        call()
