"""Retrieval metrics the labs provide (not graded): R-precision and MAP@R (Musgrave et al., 2020).

Both are leave-one-out on one set of N items: every item queries the N - 1 others, ranked by
:func:`labtools.neighbors.nearest` (squared Euclidean distance between L2-normalized rows, ties by
index). R is the number of other items with the query's label; queries with R = 0 are left out,
as pytorch-metric-learning's ``AccuracyCalculator`` does.
"""

import torch

from labtools.neighbors import nearest
from labtools.validate import check_features, check_labels

__all__ = ["r_precision", "map_at_r"]


def _hits_within_r(features, labels):
    """(hits [M, R_max] bool, r [M]) for the M queries with R >= 1: hits[q, i] is True when the
    (i+1)-th nearest other item has the query's label and i < R."""
    check_features(features)
    check_labels(labels, len(features))
    _, inverse, counts = labels.unique(return_inverse=True, return_counts=True)
    r = counts[inverse] - 1  # [N]
    if r.max() == 0:
        raise ValueError("no item shares its label with another: R-precision and MAP@R are undefined")
    _, index = nearest(features, features, int(r.max()), exclude_self=True)
    hits = (labels[index] == labels[:, None]) & (torch.arange(index.shape[1], device=r.device) < r[:, None])
    keep = r > 0
    return hits[keep], r[keep]


def r_precision(features, labels):
    """Mean over queries of (items of the query's label among its R nearest) / R.

    features: [N, D] floats, labels: [N] integers. Returns a float in [0, 1].
    """
    hits, r = _hits_within_r(features, labels)
    return (hits.sum(dim=1).double() / r).mean().item()


def map_at_r(features, labels):
    """MAP@R: mean over queries of (1/R) sum_{i <= R} precision@i * rel(i), over the R nearest.

    features: [N, D] floats, labels: [N] integers. Returns a float in [0, 1].
    """
    hits, r = _hits_within_r(features, labels)
    rank = torch.arange(1, hits.shape[1] + 1, device=r.device)
    precision = hits.cumsum(dim=1).double() / rank  # [M, R_max]: precision@i
    return ((precision * hits).sum(dim=1) / r).mean().item()
