"""labtools.neighbors.nearest: exact k-NN by squared Euclidean distance between normalized rows."""

import pytest
import torch

from labtools import neighbors
from labtools.neighbors import nearest


def rows(n, d=12, seed=0, dtype=torch.float32):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def brute_force(query, items, k, exclude_self=False):
    """Every distance in float64, a stable sort: ties by index."""
    q = torch.nn.functional.normalize(query.double(), dim=1)
    x = torch.nn.functional.normalize(items.double(), dim=1)
    dist = ((q[:, None, :] - x[None, :, :]) ** 2).sum(dim=2)
    if exclude_self:
        dist.fill_diagonal_(float("inf"))
    order = dist.argsort(dim=1, stable=True)[:, :k]
    return dist.gather(1, order), order


def tie_free(dist):
    """True when consecutive distances in every row differ by more than float32 rounding."""
    return (dist.sort(dim=1).values.diff(dim=1) > 1e-5).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_torch_backend_is_exact_in_chunks(monkeypatch, dtype, exclude_self):
    monkeypatch.setattr(neighbors, "CHUNK_ELEMENTS", 7 * 90)  # 7 query rows per chunk, the last one shorter
    items = rows(90, seed=1, dtype=dtype)
    query = items if exclude_self else rows(40, seed=2, dtype=dtype)
    expected_dist, expected_index = brute_force(query, items, 10, exclude_self)
    dist, index = nearest(query, items, 10, exclude_self=exclude_self, backend="torch")
    assert index.dtype == torch.long and dist.dtype == dtype and dist.shape == index.shape == (len(query), 10)
    assert torch.equal(index, expected_index)
    assert torch.allclose(dist.double(), expected_dist, atol=1e-6 if dtype == torch.float32 else 1e-12)
    if exclude_self:
        assert not (index == torch.arange(len(query))[:, None]).any()


def test_rows_are_normalized_first():
    query, items = rows(5, seed=3), rows(30, seed=4)
    dist, index = nearest(3 * query, 0.5 * items, 4)
    assert torch.equal(index, nearest(query, items, 4)[1])
    assert dist.min() >= 0 and dist.max() <= 4


def test_ties_are_broken_by_index():
    items = torch.eye(4).repeat(5, 1)  # item i is item i % 4 of the basis: distances 0 or 2, five copies each
    dist, index = nearest(items, items, 7)
    assert index[0].tolist() == [0, 4, 8, 12, 16, 1, 2]  # the five copies, then the lowest of the rest
    assert dist[0].tolist() == [0, 0, 0, 0, 0, 2, 2]
    _, index = nearest(items, items, 7, exclude_self=True)
    assert index[5].tolist() == [1, 9, 13, 17, 0, 2, 3]
    assert torch.equal(nearest(items, items, 6, backend="torch")[1], brute_force(items, items, 6)[1])


def test_the_k_th_place_tie_picks_the_lowest_index():
    # from the query, items 0..4 at increasing distances except 1, 2 and 4, tied
    angles = torch.tensor([0.1, 0.3, 0.3, 0.2, 0.3, 0.5])
    items = torch.stack([angles.cos(), angles.sin()], dim=1)
    query = torch.tensor([[1.0, 0.0]])
    assert nearest(query, items, 3)[1].tolist() == [[0, 3, 1]]
    assert nearest(query, items, 4)[1].tolist() == [[0, 3, 1, 2]]


def test_float64_neighbours_do_not_depend_on_the_thread_count_or_the_chunks(monkeypatch):
    query, items = rows(300, d=64, seed=9, dtype=torch.float64), rows(2000, d=64, seed=10, dtype=torch.float64)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        expected_dist, expected_index = nearest(query, items, 5, backend="torch")
        for chunk in (neighbors.CHUNK_ELEMENTS, 13 * 2000):  # all 300 queries at once, then 13 at a time
            monkeypatch.setattr(neighbors, "CHUNK_ELEMENTS", chunk)
            for n in (2, 4):
                torch.set_num_threads(n)
                dist, index = nearest(query, items, 5)  # auto: float64 stays on torch
                assert torch.equal(index, expected_index), (chunk, n)
                # another shape of the product may sum in another order: the last bits differ
                assert torch.allclose(dist, expected_dist, rtol=0, atol=1e-14), (chunk, n)
    finally:
        torch.set_num_threads(before)


def test_faiss_gives_the_same_neighbours():
    pytest.importorskip("faiss")
    items, query = rows(200, seed=5), rows(40, seed=6)
    for q, exclude_self in ((query, False), (items, True)):
        assert tie_free(brute_force(q, items, 9, exclude_self)[0])  # the 8 nearest and the next are clear
        dist_t, index_t = nearest(q, items, 8, exclude_self=exclude_self, backend="torch")
        dist_f, index_f = nearest(q, items, 8, exclude_self=exclude_self, backend="faiss")
        assert torch.equal(index_t, index_f)
        assert dist_f.dtype == torch.float32 and torch.allclose(dist_t, dist_f, atol=1e-5)
    dist64, index64 = nearest(query.double(), items.double(), 5, backend="faiss")  # float32 inside
    assert dist64.dtype == torch.float64 and torch.equal(index64, nearest(query, items, 5)[1])


def test_faiss_orders_ties_by_index():
    pytest.importorskip("faiss")
    items = torch.eye(4).repeat(5, 1)
    dist, index = nearest(items, items, 5, backend="faiss")
    assert index[0].tolist() == [0, 4, 8, 12, 16] and dist[0].tolist() == [0] * 5
    _, index = nearest(items, items, 4, exclude_self=True, backend="faiss")
    assert not (index == torch.arange(20)[:, None]).any()


def test_auto_uses_faiss_for_large_float32_sets_on_the_cpu(monkeypatch):
    pytest.importorskip("faiss")
    used = []
    search = neighbors._search_faiss
    monkeypatch.setattr(neighbors, "_search_faiss", lambda *args: used.append(True) or search(*args))
    query, items = rows(10, seed=7), rows(50, seed=8)
    monkeypatch.setattr(neighbors, "FAISS_MIN_PAIRS", 10 * 50)
    nearest(query, items, 3)
    nearest(query.double(), items.double(), 3)  # float64 stays on torch
    monkeypatch.setattr(neighbors, "FAISS_MIN_PAIRS", 10 * 50 + 1)
    nearest(query, items, 3)
    assert used == [True]


def test_auto_without_faiss_uses_torch(monkeypatch):
    monkeypatch.setattr(neighbors, "_faiss", lambda: None)
    monkeypatch.setattr(neighbors, "FAISS_MIN_PAIRS", 1)
    query, items = rows(10, seed=7), rows(50, seed=8)
    assert torch.equal(nearest(query, items, 3)[1], brute_force(query, items, 3)[1])
    with pytest.raises(ImportError, match="faiss-cpu"):
        nearest(query, items, 3, backend="faiss")


@pytest.mark.parametrize(
    "query,items,k,options,message",
    [
        (rows(3).numpy(), rows(5), 1, {}, "query must be a torch tensor"),
        (rows(3)[0], rows(5), 1, {}, "query must have shape \\[N, D\\]"),
        (rows(3), torch.ones(5, 12, dtype=torch.long), 1, {}, "items must be a float tensor"),
        (rows(3), torch.full((5, 12), float("nan")), 1, {}, "items contain NaN"),
        (rows(3), rows(5, d=4), 1, {}, "same dimension, got 12 and 4"),
        (rows(3), rows(5, dtype=torch.float64), 1, {}, "share dtype and device"),
        (torch.zeros(3, 12), rows(5), 1, {}, "zero norm"),
        (rows(3), rows(5), 6, {}, "k must be an integer in 1..5"),
        (rows(3), rows(5), 0, {}, "k must be an integer in 1..5"),
        (rows(3), rows(5), 2.0, {}, "k must be an integer"),
        (rows(3), rows(5), True, {}, "k must be an integer"),
        (rows(5), rows(5), 5, {"exclude_self": True}, "1..4 \\(the items other than the query\\)"),
        (rows(3), rows(5), 1, {"exclude_self": True}, "exclude_self needs .* Q=3, N=5"),
        (rows(3), rows(5), 1, {"backend": "annoy"}, "backend must be"),
    ],
)
def test_wrong_inputs_are_named(query, items, k, options, message):
    with pytest.raises(ValueError, match=message):
        nearest(query, items, k, **options)


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_exclude_leaves_out_one_given_item_per_query(backend):
    if backend == "faiss":
        pytest.importorskip("faiss")
    items = rows(60, seed=5)
    ids = torch.tensor([3, 41, 7, 3])
    dist, index = nearest(items[ids], items, 5, exclude=ids, backend=backend)
    unit = torch.nn.functional.normalize(items, dim=1)
    expected_dist = (2 - 2 * unit[ids] @ unit.T).clamp_min(0)
    expected_dist[torch.arange(4), ids] = float("inf")
    assert torch.equal(index, expected_dist.argsort(dim=1, stable=True)[:, :5])
    assert not (index == ids[:, None]).any()
    # exclude_self is exclude=arange(N)
    assert torch.equal(nearest(items, items, 4, exclude=torch.arange(60), backend=backend)[1],
                       nearest(items, items, 4, exclude_self=True, backend=backend)[1])


@pytest.mark.parametrize("kwargs, message", [
    ({"exclude": torch.tensor([0, 1])}, r"shape \[3\]"),
    ({"exclude": torch.tensor([0.0, 1.0, 2.0])}, "integer tensor"),
    ({"exclude": torch.tensor([0, 1, 9])}, r"0\.\.7"),
])
def test_bad_exclude_is_named(kwargs, message):
    items = rows(8, seed=6)
    with pytest.raises(ValueError, match=message):
        nearest(items[:3], items, 2, **kwargs)
    with pytest.raises(ValueError, match="not both"):
        nearest(items, items, 2, exclude=torch.arange(8), exclude_self=True)
