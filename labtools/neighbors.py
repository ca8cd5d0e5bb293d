"""Nearest-neighbour search: the one k-NN function of the kit.

:func:`nearest` ranks ``items`` for every ``query`` row by the squared Euclidean distance between
L2-normalized rows, d = ||q - x||^2 = 2 - 2 <q, x>, in [0, 4]. Rows are normalized first, so the
features of ``net.features`` (already unit rows) are used as they are.

Backends give the same neighbours (tested on data without ties) and distances equal to float32
rounding:

- ``"torch"``: exact, on the tensors' device, in chunks of queries so that at most
  :data:`CHUNK_ELEMENTS` distances are held at once, whatever Q and N. Ties are broken by item index:
  among items at the same distance the lower index ranks first, also at the k-th place.
- ``"faiss"``: faiss-cpu's exact ``IndexFlatIP`` on float32 copies (results come back on the input's
  device and dtype). faiss chooses among items tied at the k-th place itself; the returned
  neighbours are then ordered by (distance, index) like the torch backend's.
- ``"auto"`` (default): faiss when it is installed, the tensors are float32 on the CPU and
  Q x N >= :data:`FAISS_MIN_PAIRS` = 2^24 (1,000 queries against 16,777 items), torch otherwise.
  Below that the two take the same time; above it faiss is somewhat faster (``benchmarks/evaluator.py``,
  figures in ``benchmarks/README.md``). float64 stays on torch, which keeps its precision; so do GPU tensors.

Where a result is compared with one measured elsewhere (the study's cards), give float64 tensors:
float32 distances are rounded to about 1e-7, and the order in which the BLAS or faiss sums a
distance's D products, which changes with the thread count, can then swap two items closer than
that (faiss's neighbours differ between one and two threads for 1 in 10,000 Fashion-MNIST test
images against the training set); float64 moves a distance by about 1e-15, and exact ties go to
the lower index.
"""

import torch

from labtools.validate import check_features

__all__ = ["nearest", "FAISS_MIN_PAIRS", "CHUNK_ELEMENTS"]

#: Q x N (query rows times items) from which ``backend="auto"`` picks faiss.
FAISS_MIN_PAIRS = 1 << 24
#: Distances held at once by the torch backend (a chunk of query rows times N).
CHUNK_ELEMENTS = 1 << 22


@torch.no_grad()
def nearest(query, items, k, *, exclude_self=False, exclude=None, backend="auto"):
    """The k nearest items of every query row, nearest first.

    query: [Q, D], items: [N, D] float tensors of the same dtype and device, without NaN, rows of
    non-zero norm. k: 1 <= k <= N (N - 1 when an item is excluded). exclude: an int64 [Q] tensor,
    row i of the query may not return item exclude[i] (the query's own index among the items when
    the queries are some of the items: ``nearest(x[ids], x, k, exclude=ids)``). exclude_self=True
    is exclude=arange(Q) for query and items the same set (Q == N, leave-one-out).
    Returns (distances [Q, k] in the query's dtype, indices [Q, k] int64), by increasing
    distance, ties by increasing index; no gradient flows through them.
    """
    check_features(query, "query")
    check_features(items, "items")
    if query.shape[1] != items.shape[1]:
        raise ValueError(f"query and items must have the same dimension, got {query.shape[1]} and {items.shape[1]}")
    if query.dtype != items.dtype or query.device != items.device:
        raise ValueError(f"query and items must share dtype and device, got {query.dtype} on {query.device} "
                         f"and {items.dtype} on {items.device}")
    if (query.norm(dim=1) == 0).any() or (items.norm(dim=1) == 0).any():
        raise ValueError("rows of zero norm have no direction: every row of query and items must be non-zero")
    if exclude_self and len(query) != len(items):
        raise ValueError(f"exclude_self needs the query to be the items (Q == N), got Q={len(query)}, N={len(items)}")
    if exclude_self and exclude is not None:
        raise ValueError("give exclude_self or exclude, not both")
    if exclude_self:
        exclude = torch.arange(len(query), device=query.device)
    if exclude is not None:
        if not isinstance(exclude, torch.Tensor) or exclude.shape != (len(query),) or exclude.is_floating_point():
            raise ValueError(f"exclude must be an integer tensor of shape [{len(query)}] (one item per query row)")
        if len(exclude) and (exclude.min() < 0 or exclude.max() >= len(items)):
            raise ValueError(f"exclude holds item indices, 0..{len(items) - 1}")
        exclude = exclude.to(query.device, torch.int64)
    available = len(items) - (exclude is not None)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= available:
        what = ("the items other than the query" if exclude_self else
                "the items other than the excluded one" if exclude is not None else "the items")
        raise ValueError(f"k must be an integer in 1..{available} ({what}), got {k!r}")
    if backend not in ("auto", "torch", "faiss"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'faiss', got {backend!r}")
    if backend == "auto":
        large = len(query) * len(items) >= FAISS_MIN_PAIRS
        float32_on_cpu = query.device.type == "cpu" and query.dtype == torch.float32
        backend = "faiss" if large and float32_on_cpu and _faiss() is not None else "torch"
    query = torch.nn.functional.normalize(query, dim=1)
    items = torch.nn.functional.normalize(items, dim=1)
    search = _search_faiss if backend == "faiss" else _search_torch
    return search(query, items, k, exclude)


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _by_distance_then_index(dist, index):
    """Reorder each row of (dist, index) [Q, k] by increasing distance, ties by increasing index."""
    by_index = index.argsort(dim=1)
    dist, index = dist.gather(1, by_index), index.gather(1, by_index)
    order = dist.argsort(dim=1, stable=True)
    return dist.gather(1, order), index.gather(1, order)


def _k_smallest(dist, k):
    """The k smallest entries of each row of dist [C, N] and their indices, ties by lowest index."""
    values, index = dist.topk(min(k + 1, dist.shape[1]), dim=1, largest=False)
    if k < dist.shape[1]:
        # where the k-th and (k+1)-th smallest are equal, topk chose among the tied items itself:
        # take everything strictly below the k-th value, then the tied items of lowest index
        ambiguous = (values[:, k - 1] == values[:, k]).nonzero()[:, 0]
        values, index = values[:, :k], index[:, :k]
        if len(ambiguous):
            rows = dist[ambiguous]
            kth = values[ambiguous, -1:]
            tied = rows == kth
            wanted = k - (rows < kth).sum(dim=1, keepdim=True)
            chosen = (rows < kth) | (tied & (tied.cumsum(dim=1) <= wanted))  # k per row
            index[ambiguous] = chosen.nonzero()[:, 1].view(len(rows), k)
            values[ambiguous] = rows.gather(1, index[ambiguous])
    return _by_distance_then_index(values, index)


def _search_torch(query, items, k, exclude):
    rows = max(1, CHUNK_ELEMENTS // len(items))
    found_dist, found_index = [], []
    for start in range(0, len(query), rows):
        dist = (2 - 2 * query[start:start + rows] @ items.T).clamp_min(0)  # [C, N]
        if exclude is not None:
            dist[torch.arange(len(dist), device=dist.device), exclude[start:start + len(dist)]] = float("inf")
        dist, index = _k_smallest(dist, k)
        found_dist.append(dist)
        found_index.append(index)
    return torch.cat(found_dist), torch.cat(found_index)


def _search_faiss(query, items, k, exclude):
    faiss = _faiss()
    if faiss is None:
        raise ImportError("backend='faiss' needs faiss-cpu (pip install faiss-cpu)")
    index = faiss.IndexFlatIP(items.shape[1])
    index.add(items.cpu().float().contiguous().numpy())
    similarity, found = index.search(query.cpu().float().contiguous().numpy(), k + (exclude is not None))
    similarity, found = torch.from_numpy(similarity), torch.from_numpy(found)
    if exclude is not None:
        # drop the excluded item's column, or the last one where it is not among the k + 1
        own = found == exclude.cpu()[:, None]
        own[~own.any(dim=1), -1] = True
        similarity, found = similarity[~own].view(len(found), k), found[~own].view(len(found), k)
    dist, index = _by_distance_then_index((2 - 2 * similarity).clamp_min(0), found)
    return dist.to(query.device, query.dtype), index.to(query.device)
