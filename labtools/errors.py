"""Error analysis of an embedding: the misclassified queries and their neighbours, per-class reports.

A query is classified by its nearest neighbour (:func:`labtools.neighbors.nearest`: squared
Euclidean distance between L2-normalized rows, ties by index) among reference items, or, without
references, among the other queries (leave-one-out). Typical use, on the features of a test set::

    indices, found = nearest_labels(features, labels, k=1)
    report = class_report(labels, found[:, 0], subsets={"seen": range(8), "unseen": (8, 9)})
    wrong = misclassified(features, labels, k=10)  # then viz.retrieval_grid(images[wrong.queries], ...)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np
import torch

from labtools.neighbors import nearest
from labtools.validate import check_features, check_labels

__all__ = ["Misclassified", "nearest_labels", "misclassified", "class_report"]


class Misclassified(NamedTuple):
    """The M queries whose nearest neighbour has another label, with their k nearest neighbours."""

    queries: torch.Tensor  #: int64 [M]: the queries' indices, increasing
    labels: torch.Tensor  #: [M]: their labels
    neighbours: torch.Tensor  #: int64 [M, k]: indices of their k nearest references (or other queries), nearest first
    neighbour_labels: torch.Tensor  #: [M, k]: the labels of those neighbours
    distances: torch.Tensor  #: [M, k]: their squared distances


def _neighbours(features, labels, references, reference_labels, k):
    """(squared distances [Q, k], indices [Q, k], labels [Q, k]) of the k nearest neighbours of every query."""
    check_features(features)
    check_labels(labels, len(features))
    if (references is None) != (reference_labels is None):
        raise ValueError("give references and reference_labels together, or neither (leave-one-out among the queries)")
    if references is None:
        distances, index = nearest(features, features, k, exclude_self=True)
        return distances, index, labels[index]
    check_features(references, "references")
    check_labels(reference_labels, len(references), "reference_labels")
    distances, index = nearest(features, references, k)
    return distances, index, reference_labels[index]


def nearest_labels(features, labels, references=None, reference_labels=None, k=10):
    """The k nearest references of every query and their labels: ``(indices [Q, k], labels [Q, k])``.

    features: [Q, D] floats, labels: [Q] integers, the queries. references: [N, D] floats and
    reference_labels: [N] integers, both given or both None; None ranks every query against the
    other queries (leave-one-out). k: 1 <= k <= N (Q - 1 leave-one-out). ``labels[:, 0]`` of the
    result is the nearest-neighbour classification of the queries.
    """
    _, index, found = _neighbours(features, labels, references, reference_labels, k)
    return index, found


def misclassified(features, labels, references=None, reference_labels=None, k=10) -> Misclassified:
    """The queries misclassified by their nearest neighbour (its label is not theirs), with their k
    nearest neighbours and the neighbours' labels (:class:`Misclassified`).

    Arguments as for :func:`nearest_labels`; k (default 10) also counts the first, wrong neighbour.
    """
    distances, index, found = _neighbours(features, labels, references, reference_labels, k)
    wrong = (found[:, 0] != labels).nonzero().squeeze(1)  # [M]
    return Misclassified(wrong, labels[wrong], index[wrong], found[wrong], distances[wrong])


def _as_classes(values, name: str) -> np.ndarray:
    """``values`` (a tensor, an array or any iterable of ints) as a 1-d integer numpy array."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        values = np.asarray(values if isinstance(values, np.ndarray) else list(values))
    except TypeError as error:
        raise ValueError(f"{name} must be a 1-d sequence of integer class ids, got {type(values).__name__}") from error
    if values.ndim != 1 or not len(values) or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{name} must be a non-empty 1-d sequence of integer class ids, got {values.dtype} "
                         f"{list(values.shape)}")
    return values


def class_report(labels, predicted, subsets: Mapping[str, Iterable[int]] | None = None) -> dict[str, dict]:
    """Per-class precision, recall and F1, and the confusion matrix, for each subset of classes.

    labels, predicted: [Q] integer class ids (tensors, arrays or lists), the true and the predicted
    class of every query (predicted: ``nearest_labels(...)[1][:, 0]``). subsets: name -> class ids,
    e.g. ``{"seen": range(8), "unseen": (8, 9)}``; default ``{"all": every class of labels}``.
    A subset is scored on its own queries (those whose label is one of its classes): precision of
    class c counts the subset's queries predicted c. Returns, for each subset name, a dict of
    "classes" (its class ids, increasing), "report" (``sklearn.metrics.classification_report`` with
    ``output_dict=True`` over those classes: ``report[str(c)]`` holds "precision", "recall",
    "f1-score", "support", then the averages; a ratio with nothing to divide is 0), "columns" (every
    class among the labels, the predictions and the subsets, increasing) and "confusion" (int64 [len(classes),
    len(columns)]: row i counts the queries of classes[i] by predicted class columns[j], so a query
    of an unseen class predicted as a seen one shows).
    """
    from sklearn.metrics import classification_report, confusion_matrix

    labels, predicted = _as_classes(labels, "labels"), _as_classes(predicted, "predicted")
    if len(labels) != len(predicted):
        raise ValueError(f"labels and predicted must hold one class per query, got {len(labels)} and {len(predicted)}")
    if subsets is None:
        subsets = {"all": np.unique(labels)}
    if not isinstance(subsets, Mapping) or not subsets:
        raise ValueError("subsets must be a non-empty dict name -> class ids, e.g. {'seen': range(8), 'unseen': (8, 9)}")
    subsets = {name: np.unique(_as_classes(classes, f"subsets[{name!r}]")) for name, classes in subsets.items()}
    columns = np.union1d(np.union1d(labels, predicted), np.concatenate(list(subsets.values())))
    reports = {}
    for name, classes in subsets.items():
        mine = np.isin(labels, classes)
        if not mine.any():
            raise ValueError(f"subsets[{name!r}] (classes {', '.join(map(str, classes))}) has no query: "
                             f"the labels hold classes {', '.join(map(str, np.unique(labels)))}")
        report = classification_report(labels[mine], predicted[mine], labels=classes, output_dict=True,
                                        zero_division=0)
        confusion = confusion_matrix(labels[mine], predicted[mine], labels=columns)[np.searchsorted(columns, classes)]
        reports[name] = {"classes": classes.tolist(), "report": report, "columns": columns.tolist(),
                         "confusion": confusion.astype(np.int64)}
    return reports
