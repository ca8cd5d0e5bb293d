"""Reference evaluator: full-ranking average precision and precision-recall curves.

Used by the grader, the checkpoint cards, the demo and the benchmarks. Every query is ranked
against all N items with itself excluded; AP = sum_k prec(k) rel(k) / T over the whole ranking,
ties in distance broken by item index (as a stable sort does).
"""

from __future__ import annotations

import torch

from autograder.reference.lab1 import distances

#: Distance matrix entries computed at once; bounds memory to a few hundred MB whatever N is.
CHUNK_ELEMENTS = 1 << 24


def check_embedding(features: torch.Tensor, labels: torch.Tensor, *, name: str = "features") -> None:
    """Raise a ValueError/TypeError naming the problem unless ``features`` are [N, D] unit rows
    of floats without NaN and ``labels`` an integer [N] vector."""
    if not isinstance(features, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} and labels must be torch tensors")
    if features.ndim != 2:
        raise ValueError(f"{name} must have shape [N, D], got {tuple(features.shape)}")
    if labels.ndim != 1 or len(labels) != len(features):
        raise ValueError(f"labels must have shape [{len(features)}], got {tuple(labels.shape)}")
    if not features.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {features.dtype}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    norms = features.norm(dim=1)
    if not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
        raise ValueError(f"{name} rows must be L2-normalized (norms range {norms.min():.4f}..{norms.max():.4f})")


def _ranked_relevance(features, labels, start, stop):
    """Relevance of the ranking of queries start..stop-1 against all items, query excluded.

    Returns a float64 [C, N - 1] tensor: row c, column k is 1 where the (k+1)-th closest other
    item has the query's label.
    """
    n = len(labels)
    dist = distances(features[start:stop], features)
    rows = torch.arange(stop - start, device=dist.device)
    dist[rows, rows + start] = float("inf")  # the query ranks last, then is cut off
    order = torch.argsort(dist, dim=1, stable=True)[:, : n - 1]
    return (labels[order] == labels[start:stop, None]).to(torch.float64)


def full_ranking_ap(features: torch.Tensor, labels: torch.Tensor, *, device=None) -> torch.Tensor:
    """Per-query average precision of every item against all others: float64 [N] on the CPU.

    features: [N, D] L2-normalized rows, labels: [N] integers. Query i is ranked against the
    N - 1 other items; its AP is 0 when it has no relevant item. The mean is the mAP, and
    ``full_ranking_ap(...)[:q].mean()`` the mAP of the first q queries.
    """
    check_embedding(features, labels)
    device = torch.device(device) if device is not None else features.device
    features, labels = features.to(device), labels.to(device)
    n = len(labels)
    chunk = max(1, CHUNK_ELEMENTS // max(n, 1))
    aps = []
    for start in range(0, n, chunk):
        relevant = _ranked_relevance(features, labels, start, min(n, start + chunk))
        hits = torch.cumsum(relevant, dim=1)
        ranks = torch.arange(1, n, dtype=torch.float64, device=device)
        total = relevant.sum(dim=1).clamp_min(1.0)
        aps.append(((hits / ranks) * relevant).sum(dim=1).div(total).cpu())
    return torch.cat(aps)


def pr_curve(features: torch.Tensor, labels: torch.Tensor, num_queries: int | None = None):
    """Mean precision-recall curve of the first ``num_queries`` queries (all by default).

    Returns (recall, precision): float64 [N - 1] tensors, recall(k) and prec(k) for k = 1..N-1
    averaged over the queries.
    """
    check_embedding(features, labels)
    q = len(labels) if num_queries is None else num_queries
    relevant = _ranked_relevance(features, labels, 0, q)
    hits = torch.cumsum(relevant, dim=1)
    precision = hits / torch.arange(1, len(labels), dtype=torch.float64)
    recall = hits / relevant.sum(dim=1, keepdim=True).clamp_min(1.0)
    return recall.mean(dim=0), precision.mean(dim=0)


def top_k(features: torch.Tensor, query_index: torch.Tensor, k: int = 50) -> torch.Tensor:
    """Indices [Q, k] of the k closest items to each query (by index into ``features``), itself excluded."""
    dist = distances(features[query_index], features)
    dist[torch.arange(len(query_index)), query_index] = float("inf")
    return torch.argsort(dist, dim=1, stable=True)[:, :k]
