"""Reference evaluator: full-ranking average precision and precision-recall curves.

Used by the grader, the checkpoint cards, the demo and the benchmarks. Every query is ranked
against all N items with itself excluded; AP = sum_k prec(k) rel(k) / T over the whole ranking,
ties in distance broken by item index (as a stable sort does).

How it ranks (issue 7): each distance becomes one integer key, its float32 bits above a relevance
bit, so that sorting the values alone (NumPy's vectorized sort on the CPU, ``torch.sort`` on a GPU)
ranks the items and carries their relevance, with no argsort and no gather; AP then needs only the
positions of the relevant entries. int32 keys sort faster than int64 ones (benchmarks/README.md)
but have no room for the item index, so the few ties between a relevant and an irrelevant item are
put back in index order afterwards (:func:`_untie`); where ties are many, int64 keys that hold the
index take over.
On the CPU whole chunks of queries go to worker threads. ``benchmarks/evaluator.py`` times it
against the plain argsort version (its previous self) and other libraries.
"""

from __future__ import annotations

import numbers
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import torch

from autograder.labs.lab1_retrieval.reference import distances
from labtools.neighbors import nearest

#: Distance matrix entries in flight at once, shared among the worker threads: whatever N is, the
#: key buffers take 64 MiB in all, and a chunk's float32 temporaries (8 MiB each on two cores) stay
#: small. The size matters little between 2^22 and 2^24 (benchmarks/evaluator.py).
CHUNK_ELEMENTS = 1 << 22


def check_embedding(features: torch.Tensor, labels: torch.Tensor, *, name: str = "features") -> None:
    """Raise a ValueError/TypeError naming the problem unless ``features`` are [N, D] unit rows
    (N >= 1) of floats without NaN and ``labels`` an integer [N] vector."""
    if not isinstance(features, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} and labels must be torch tensors")
    if features.ndim != 2 or not features.shape[0]:
        raise ValueError(f"{name} must have shape [N, D] with N >= 1, got {tuple(features.shape)}")
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


def _sorted_keys(dist, labels, start, flat, wide):
    """Sort one key per entry of ``dist`` (float [C, N]: queries start..start+C-1 against all items).

    Returns an int [C, N] view of ``flat`` (an int64 buffer of 2 C N entries), sorted along rows,
    whose low bit is 1 where the item has the query's label; the query itself ranks last, as not
    relevant. key = (distance bits - 2^30) * 2^s + 2 * index + relevant orders as (distance, index,
    relevance) and stays in range. ``wide``: int64 keys with the index (s = 1 + bits of N - 1), so
    sorting values alone is exactly the stable argsort; else int32 keys without it (s = 1), faster
    to sort, where a tie puts its irrelevant items first (see :func:`_untie`). Float64
    distances leave no room for the index: a stable argsort ranks them.
    """
    c, n = dist.shape
    dtype = torch.int64 if wide else torch.int32
    key, scratch = flat.view(dtype)[: 2 * c * n].view(2, c, n)
    rows = torch.arange(c, device=dist.device)
    labels = labels.to(dtype)  # class ids 0..K-1 (see full_ranking_ap): the fast eq writes its own dtype
    torch.eq(labels[start : start + c, None], labels, out=scratch)  # 1 where the item is relevant
    if dist.dtype == torch.float64:
        dist[rows, rows + start], scratch[rows, rows + start] = float("inf"), 0  # the query last, not relevant
        return scratch.gather(1, torch.argsort(dist, dim=1, stable=True))
    torch.sub(dist.float().view(torch.int32), 1 << 30, out=key)  # distances >= +0.0: bits order as they do
    if wide:
        scratch += torch.arange(0, 2 * n, 2, device=dist.device)
    torch.add(scratch, key, alpha=1 << ((n - 1).bit_length() + 1 if wide else 1), out=key)
    key[rows, rows + start] = torch.iinfo(dtype).max - 1  # last, relevance bit 0
    if key.device.type == "cpu":
        key.numpy().sort(axis=1)  # NumPy's vectorized sort of values: over 10x torch.sort on the CPU
        return key
    return torch.sort(key, dim=1).values


def _relevant_positions(key) -> torch.Tensor:
    """Flat positions (int64 [P], row by row) of the entries of ``key`` (int [C, N]) with low bit 1."""
    if key.device.type == "cpu":  # NumPy finds them about twice as fast
        relevant = np.bitwise_and(key.numpy(), 1, out=np.empty(key.shape, dtype=bool), casting="unsafe")
        return torch.from_numpy(np.flatnonzero(relevant))
    return (key & 1).view(-1).nonzero().squeeze(1)


def _untie(key, dist, labels, start, positions, rank) -> bool:
    """Put the ties between relevant and irrelevant items of int32 ``key`` back in index order.

    key: sorted int32 [C, N] from :func:`_sorted_keys` (a tie's irrelevant items first), dist: its
    float [C, N] distances, positions: flat positions (int64 [P]) of the relevant entries, rank:
    their 1-based ranks, lowered in place. A tie shows as a relevant entry right after a key that
    differs in the relevance bit alone; its members are looked up in ``dist``, and the t-th
    relevant one in index order, after m_t of the tie's m irrelevant ones, moves m - m_t places up.
    Returns False, changing nothing, when there are more ties than rows (int64 keys are cheaper).
    """
    c, n = key.shape
    flat = key.view(-1)
    previous = torch.index_select(flat, 0, (positions - 1).clamp_min(0))
    slot = ((previous == torch.index_select(flat, 0, positions) - 1) & (rank > 1)).nonzero().squeeze(1)
    if len(slot) > c:
        return False
    row = positions[slot] // n  # each tie's query row; slot: its first relevant entry in positions
    value = ((previous[slot] >> 1) + (1 << 30)).view(torch.float32)  # the tie's distance
    member = torch.index_select(dist, 0, row) == value[:, None]  # [G, N]
    member[torch.arange(len(row), device=key.device), row + start] = False  # never the query itself
    tie, item = member.nonzero(as_tuple=True)  # by tie, then by index
    irrelevant = (labels[item] != labels[start + row[tie]]).long()
    count = torch.bincount(tie, minlength=len(row))
    first = torch.cumsum(count, 0) - count
    before = torch.cumsum(irrelevant, 0) - irrelevant  # irrelevant members before each member ...
    before -= before[first[tie]]  # ... of its own tie
    m = torch.zeros(len(row), dtype=torch.long, device=key.device).index_add_(0, tie, irrelevant)
    t = torch.arange(len(tie), device=key.device) - first[tie] - before  # relevant members before it
    relevant = irrelevant == 0
    rank[(slot[tie] + t)[relevant]] -= (m[tie] - before)[relevant]
    return True


def _chunk_ap(features, labels, start, stop, flat, state) -> torch.Tensor:
    """AP (float64 [C]) of queries start..stop-1; ``flat``: an int64 buffer of 2 C N entries.

    int32 keys while ``state.wide`` is False; a chunk with more ties than rows sets it for good.
    """
    c, n = stop - start, len(labels)
    dist = distances(features[start:stop], features)
    for wide in (state.wide or dist.dtype == torch.float64, True):
        key = _sorted_keys(dist, labels, start, flat, wide)
        positions = _relevant_positions(key)
        rank = positions % n + 1
        if wide or _untie(key, dist, labels, start, positions, rank):
            break
        state.wide = True
    first = torch.searchsorted(positions, torch.arange(c + 1, device=dist.device) * n)  # per row, and P
    count = first.diff()
    j = torch.arange(1, len(positions) + 1, device=dist.device) - first[:-1].repeat_interleave(count)
    return torch.segment_reduce(j.double() / rank, "sum", lengths=count) / count.clamp_min(1)


def full_ranking_ap(features: torch.Tensor, labels: torch.Tensor, *, device=None) -> torch.Tensor:
    """Per-query average precision of every item against all others: float64 [N] on the CPU.

    features: [N, D] L2-normalized rows, labels: [N] integers. Query i is ranked against the
    N - 1 other items; its AP is 0 when it has no relevant item. The mean is the mAP, and
    ``full_ranking_ap(...)[:q].mean()`` the mAP of the first q queries. Queries are taken in
    chunks of ``CHUNK_ELEMENTS // (workers * N)``, so memory stays bounded whatever N is. On the CPU,
    ``torch.get_num_threads()`` worker threads take whole chunks, each op running on one thread
    (set for the duration of the call): a busy core then delays one chunk, not every op.
    """
    check_embedding(features, labels)
    device = torch.device(device) if device is not None else features.device
    features = features.to(device)
    labels = torch.unique(labels.to(device), return_inverse=True)[1]  # class ids 0..K-1 fit int32
    n = len(labels)
    threads = torch.get_num_threads()
    workers = threads if device.type == "cpu" else 1
    chunk = max(1, min(n, CHUNK_ELEMENTS // workers // max(n, 1)))
    state, buffers = SimpleNamespace(wide=False), threading.local()
    ap = torch.empty(n, dtype=torch.float64)  # filled in place: no small result outlives its chunk's big
    # temporaries, which would pin them on the heap and let memory grow with every chunk

    def chunk_ap(start: int) -> None:
        if not hasattr(buffers, "flat"):
            buffers.flat = torch.empty(2 * chunk * n, dtype=torch.int64, device=device)
        stop = min(n, start + chunk)
        ap[start:stop] = _chunk_ap(features, labels, start, stop, buffers.flat, state)

    torch.set_num_threads(1 if workers > 1 else threads)
    try:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(chunk_ap, range(0, n, chunk)))
    finally:
        torch.set_num_threads(threads)
    return ap


def pr_curve(features: torch.Tensor, labels: torch.Tensor, num_queries: int | None = None):
    """Mean precision-recall curve of the first ``num_queries`` queries (all by default).

    Returns (recall, precision): float64 [N - 1] tensors on the features' device, recall(k) and
    prec(k) for k = 1..N-1 averaged over the queries (recall 0 for a query without relevant items).
    Queries are taken in chunks of ``CHUNK_ELEMENTS // N``, one after the other, so memory stays
    bounded whatever N is and the sums are the same in every run.
    """
    check_embedding(features, labels)
    n = len(labels)
    q = n if num_queries is None else num_queries
    if isinstance(q, bool) or not isinstance(q, numbers.Integral) or not 1 <= q <= n:
        raise ValueError(f"num_queries must be an integer from 1 to {n} (the number of items), got {num_queries!r}")
    device = features.device
    labels = torch.unique(labels.to(device), return_inverse=True)[1]
    chunk = max(1, min(q, CHUNK_ELEMENTS // n))
    flat = torch.empty(2 * chunk * n, dtype=torch.int64, device=device)
    ranks = torch.arange(1, n, dtype=torch.float64, device=device)  # k = 1..N-1
    recall, precision = (torch.zeros(n - 1, dtype=torch.float64, device=device) for _ in range(2))
    for start in range(0, q, chunk):
        stop = min(q, start + chunk)
        key = _sorted_keys(distances(features[start:stop], features), labels, start, flat, wide=True)
        hits = torch.cumsum((key[:, : n - 1] & 1).to(torch.float64), dim=1)  # [C, N - 1], the query (last) left out
        recall += (hits / hits[:, -1:].clamp_min(1.0)).sum(dim=0)
        precision += (hits / ranks).sum(dim=0)
    return recall / q, precision / q


def top_k(features: torch.Tensor, query_index: torch.Tensor, k: int = 50) -> torch.Tensor:
    """Indices [Q, k] of the k closest items to each query (by index into ``features``), itself
    excluded, ties by index (:func:`labtools.neighbors.nearest`)."""
    return nearest(features[query_index], features, k, exclude=query_index, backend="torch")[1]
