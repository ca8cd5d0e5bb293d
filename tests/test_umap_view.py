"""labtools.umap_view: deterministic UMAP embeddings, train and test embeddings in one map.

The first UMAP fit of a process compiles umap's numba functions, which takes most of this file's
time; the inputs are kept to a few hundred rows.
"""

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from labtools import umap_view  # noqa: E402

PER_CLASS = 80
#: Rows of each class that go to the training set; the rest of the class is test.
TRAIN_PER_CLASS = 60


def blobs(num_classes, dim=10, spread=20.0, seed=0):
    """Gaussian blobs of PER_CLASS rows each, unit variance, centred ``spread`` apart along every axis."""
    rng = np.random.default_rng(seed)
    features = np.concatenate([rng.normal(c * spread, 1.0, size=(PER_CLASS, dim)) for c in range(num_classes)])
    return features.astype(np.float32), np.repeat(np.arange(num_classes), PER_CLASS)


@pytest.fixture(scope="module")
def two_blobs():
    return blobs(2)


@pytest.fixture(scope="module")
def split():
    """Three blobs split per class into train (TRAIN_PER_CLASS rows) and test (the rest)."""
    features, labels = blobs(3)
    train = np.arange(len(labels)) % PER_CLASS < TRAIN_PER_CLASS
    return features[train], labels[train], features[~train], labels[~train]


def test_importing_the_module_does_not_import_umap():
    code = "import sys, labtools.umap_view; print('umap' in sys.modules, 'numba' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert run.stdout.split() == ["False", "False"]


def test_embedding_is_n_by_2_deterministic_and_separates_far_blobs(two_blobs):
    features, labels = two_blobs
    first = umap_view.umap_embedding(torch.from_numpy(features), seed=3)
    again = umap_view.umap_embedding(features, seed=3)
    assert isinstance(first, np.ndarray) and first.shape == (2 * PER_CLASS, 2) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)
    centroids = np.stack([first[labels == c].mean(axis=0) for c in (0, 1)])
    distances = np.linalg.norm(first[:, None, :] - centroids[None], axis=2)  # [N, 2]
    assert (distances.argmin(axis=1) == labels).all(), "every point is nearer its own blob's centroid"
    assert not np.allclose(first, umap_view.umap_embedding(features, seed=4))


def test_embedding_checks_its_input(two_blobs):
    features, _ = two_blobs
    with pytest.raises(ValueError, match=r"features must have shape \[N, D\], got \[10\]"):
        umap_view.umap_embedding(torch.randn(10))
    with pytest.raises(TypeError, match="features must be a torch.Tensor or a numpy array, got list"):
        umap_view.umap_embedding(features.tolist())
    message = (r"features must have more than n_neighbors=15 rows \(UMAP links each point to its 15 nearest "
               r"neighbours\), got 15: give more rows or a smaller n_neighbors")
    with pytest.raises(ValueError, match=message):
        umap_view.umap_embedding(features[:15])
    broken = features.copy()
    broken[[4, 7], 0] = [np.nan, np.inf]
    with pytest.raises(ValueError, match=r"features must be finite, got NaN or infinite values in 2 of its 160 "
                                         r"rows \(the first: row 4\)"):
        umap_view.umap_embedding(broken)
    with pytest.raises(ValueError, match="n_neighbors must be an integer >= 2, got 1"):
        umap_view.umap_embedding(features, n_neighbors=1)
    with pytest.raises(ValueError, match="n_neighbors must be an integer >= 2, got 2.5"):
        umap_view.umap_embedding(features, n_neighbors=2.5)
    with pytest.raises(ValueError, match=r"min_dist must lie in \[0, 1\], got 1.5"):
        umap_view.umap_embedding(features, min_dist=1.5)


@pytest.fixture(scope="module")
def scatter(split, tmp_path_factory):
    path = tmp_path_factory.mktemp("maps") / "umap" / "train_test.png"
    fig = umap_view.train_test_scatter(*split, title="blobs", class_names={0: "a", 1: "b", 2: "c"},
                                       highlight=torch.tensor([2]), seed=1, path=path)
    yield fig, path
    plt.close(fig)


def test_scatter_draws_train_and_test_of_one_embedding(split, scatter):
    fig, path = scatter
    train, train_labels, test, test_labels = split
    assert isinstance(fig, Figure) and path.is_file() and path.stat().st_size > 0
    (ax,) = fig.axes
    assert ax.get_title() == "blobs"
    assert [c.get_gid() for c in ax.collections] == ["train 0", "train 1", "train 2", "test 0", "test 1", "test 2"]
    embedding = umap_view.umap_embedding(np.concatenate([train, test]), seed=1)  # one fit of the rows stacked
    for collection in ax.collections:
        which, c = collection.get_gid().split()
        points, labels = (embedding[:len(train)], train_labels) if which == "train" else \
            (embedding[len(train):], test_labels)
        np.testing.assert_array_equal(collection.get_offsets(), points[labels == int(c)])


def test_scatter_styles_train_test_and_highlighted_classes(scatter):
    fig, _ = scatter
    (ax,) = fig.axes
    by_gid = {c.get_gid(): c for c in ax.collections}
    for c in range(3):
        train, test = by_gid[f"train {c}"], by_gid[f"test {c}"]
        assert tuple(train.get_facecolor()[0][:3]) == tuple(test.get_facecolor()[0][:3]) == to_rgba(f"C{c}")[:3]
        assert train.get_sizes()[0] < test.get_sizes()[0]
        assert train.get_alpha() < test.get_alpha()
    for which in ("train", "test"):
        plain, marked = by_gid[f"{which} 0"], by_gid[f"{which} 2"]
        assert marked.get_sizes()[0] > plain.get_sizes()[0]
        assert tuple(marked.get_edgecolor()[0][:3]) == (0.0, 0.0, 0.0)
    edges = by_gid["train 0"].get_edgecolor()
    assert len(edges) == 0 or edges[0][3] == 0, "training dots have no edge"
    assert tuple(by_gid["test 0"].get_edgecolor()[0][:3]) == to_rgba("0.25")[:3]  # dark, not black
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b", "c*", "train", "test"]
    handles = legend.legend_handles
    assert [to_rgba(h.get_markerfacecolor()) for h in handles[:3]] == [to_rgba(f"C{c}") for c in range(3)]
    assert handles[2].get_markersize() > handles[1].get_markersize()  # c, highlighted: larger, black-edged
    assert to_rgba(handles[2].get_markeredgecolor()) == to_rgba("black")
    assert handles[3].get_markersize() < handles[4].get_markersize()


def test_scatter_draws_on_a_given_axes(split):
    train, train_labels, test, test_labels = split
    fig = Figure()
    left, right = fig.subplots(1, 2)
    some = np.arange(len(train)) % 3 == 0  # fewer training rows: a fit of its own
    assert umap_view.train_test_scatter(torch.from_numpy(train[some]), torch.from_numpy(train_labels[some]), test,
                                        test_labels, ax=right, n_neighbors=5) is fig
    assert not left.collections and len(right.collections) == 6
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["0", "1", "2", "train", "test"]


def test_scatter_checks_its_inputs(split):
    train, train_labels, test, test_labels = split
    with pytest.raises(ValueError, match=r"train_labels must have shape \[N\] with N=180 \(as in train_features\), "
                                         r"got \[179\]"):
        umap_view.train_test_scatter(train, train_labels[:-1], test, test_labels)
    with pytest.raises(ValueError, match=r"test_labels must have shape \[M\] with M=60 \(as in test_features\)"):
        umap_view.train_test_scatter(train, train_labels, test, test_labels[:10])
    with pytest.raises(ValueError, match=r"test_features must have shape \[M, D\] with D=10 \(as in "
                                         r"train_features\), got \[60, 9\]"):
        umap_view.train_test_scatter(train, train_labels, test[:, :9], test_labels)
    message = (r"train_features and test_features together \(10 \+ 5 rows\) must have more than n_neighbors=15 "
               r"rows .* give more rows or a smaller n_neighbors")
    with pytest.raises(ValueError, match=message):
        umap_view.train_test_scatter(train[:10], train_labels[:10], test[:5], test_labels[:5])
    broken = test.copy()
    broken[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"test_features must be finite, got NaN or infinite values in 1 of its 60"):
        umap_view.train_test_scatter(train, train_labels, broken, test_labels)
    with pytest.raises(TypeError, match="train_labels must hold integer class ids, got dtype float"):
        umap_view.train_test_scatter(train, train_labels.astype(float), test, test_labels)
    with pytest.raises(ValueError, match=r"highlight must hold classes of the labels \(0, 1, 2\), got 8, 9"):
        umap_view.train_test_scatter(train, train_labels, test, test_labels, highlight=(8, 9))
    with pytest.raises(ValueError, match="class_names has no entry for class 2"):
        umap_view.train_test_scatter(train, train_labels, test, test_labels, class_names=["a", "b"])
