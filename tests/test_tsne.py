"""labtools.tsne: deterministic embeddings, scatter plots by class, one panel per network."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from labtools import tsne  # noqa: E402
from labtools.data import digits_dataset  # noqa: E402
from labtools.models import ConvNet  # noqa: E402

N = 150


@pytest.fixture(scope="module")
def small_digits():
    images, labels = digits_dataset().tensors
    return TensorDataset(images[:N], labels[:N])


@pytest.fixture(scope="module")
def features(small_digits):
    """Pixel features [N, 784] of the digits: structured enough for t-SNE, free to compute."""
    images, _ = small_digits.tensors
    return images.flatten(1)


def test_embedding_is_n_by_2_and_deterministic(features):
    first = tsne.tsne_embedding(features, seed=3)
    again = tsne.tsne_embedding(features.numpy(), seed=3)
    assert isinstance(first, np.ndarray)
    assert first.shape == (N, 2)
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)


def test_embedding_depends_on_the_seed(features):
    assert not np.allclose(tsne.tsne_embedding(features, seed=0), tsne.tsne_embedding(features, seed=1))


def test_small_n_lowers_the_perplexity_instead_of_failing():
    points = torch.randn(12, 5, generator=torch.Generator().manual_seed(0))
    assert tsne.tsne_embedding(points, perplexity=30.0).shape == (12, 2)
    np.testing.assert_array_equal(
        tsne.tsne_embedding(points, perplexity=30.0), tsne.tsne_embedding(points, perplexity=11 / 3)
    )


def test_embedding_checks_its_input():
    with pytest.raises(ValueError, match=r"features must have shape \[N, D\], got \[10\]"):
        tsne.tsne_embedding(torch.randn(10))
    with pytest.raises(ValueError, match=r"features must have shape \[N, D\] with N >= 2 and D >= 2, got \[1, 5\]"):
        tsne.tsne_embedding(torch.randn(1, 5))
    with pytest.raises(ValueError, match="perplexity must be positive"):
        tsne.tsne_embedding(torch.randn(10, 5), perplexity=0)
    with pytest.raises(TypeError, match="features must be a torch.Tensor or a numpy array, got list"):
        tsne.tsne_embedding([[0.0, 1.0], [1.0, 0.0]])


def test_scatter_one_collection_per_class_with_named_legend(features, small_digits, tmp_path):
    _, labels = small_digits.tensors
    names = [f"digit {c}" for c in range(10)]
    path = tmp_path / "maps" / "tsne.png"
    highlight = torch.tensor([8, 9])
    fig = tsne.tsne_scatter(features, labels, title="pixels", class_names=names, highlight=highlight, path=path)
    try:
        assert isinstance(fig, Figure)
        (ax,) = fig.axes
        assert ax.get_title() == "pixels"
        classes = sorted(set(labels.tolist()))
        assert len(ax.collections) == len(classes)
        assert sum(len(c.get_offsets()) for c in ax.collections) == N
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [names[c] for c in classes]
        for c, collection in zip(classes, ax.collections):
            assert tuple(collection.get_facecolor()[0]) == to_rgba(f"C{c}")
            marked = c in (8, 9)
            assert (collection.get_sizes()[0] > 10) == marked
            edges = collection.get_edgecolor()
            if marked:
                assert tuple(edges[0]) == to_rgba("black")
            else:
                assert len(edges) == 0 or edges[0][3] == 0, "other classes have no edge"
        assert path.is_file() and path.stat().st_size > 0
    finally:
        plt.close(fig)


def test_scatter_draws_on_a_given_axes_with_numpy_inputs(features, small_digits):
    _, labels = small_digits.tensors
    fig, (left, right) = plt.subplots(1, 2)
    try:
        assert tsne.tsne_scatter(features.numpy(), labels.numpy(), ax=right) is fig
        assert len(left.collections) == 0
        assert [t.get_text() for t in right.get_legend().get_texts()][:3] == ["0", "1", "2"]
    finally:
        plt.close(fig)


def test_scatter_checks_its_inputs(features, small_digits):
    _, labels = small_digits.tensors
    message = rf"labels must have shape \[N\] with N={N} \(as in features\), got \[{N - 1}\]"
    with pytest.raises(ValueError, match=message):
        tsne.tsne_scatter(features, labels[:-1])
    with pytest.raises(TypeError, match="labels must hold integer class ids"):
        tsne.tsne_scatter(features, labels.float())
    with pytest.raises(ValueError, match="class_names has no entry for class"):
        tsne.tsne_scatter(features, labels, class_names=["zero", "one"])


def test_side_by_side_one_panel_per_network(small_digits, tmp_path):
    torch.manual_seed(0)
    nets = {"cross-entropy": ConvNet(), "triplet": ConvNet()}
    path = tmp_path / "side.png"
    fig = tsne.tsne_side_by_side(nets, small_digits, num_images=120, batch_size=50, path=path)
    try:
        assert isinstance(fig, Figure)
        assert [ax.get_title() for ax in fig.axes] == ["cross-entropy", "triplet"]
        for ax in fig.axes:
            assert sum(len(c.get_offsets()) for c in ax.collections) == 120
        (legend,) = fig.legends
        assert [t.get_text() for t in legend.get_texts()] == [str(c) for c in range(10)]
        assert path.is_file() and path.stat().st_size > 0
    finally:
        plt.close(fig)


def test_side_by_side_extracts_with_labtools_models(small_digits, monkeypatch):
    calls = []
    original = tsne.extract_features

    def spy(net, images, **kwargs):
        calls.append((net, len(images), kwargs))
        return original(net, images, **kwargs)

    monkeypatch.setattr(tsne, "extract_features", spy)
    net = ConvNet()
    fig = tsne.tsne_side_by_side({"only": net}, small_digits.tensors, num_images=40, batch_size=16, device="cpu")
    try:
        assert len(fig.axes) == 1
        assert calls == [(net, 40, {"batch_size": 16, "device": "cpu"})]
    finally:
        plt.close(fig)


def test_side_by_side_checks_its_inputs(small_digits):
    with pytest.raises(ValueError, match="nets must be a non-empty dict"):
        tsne.tsne_side_by_side({}, small_digits)
    with pytest.raises(TypeError, match=r"nets\['bad'\] must be a network with a .features method"):
        tsne.tsne_side_by_side({"bad": torch.nn.Linear(2, 2)}, small_digits)
    with pytest.raises(TypeError, match="dataset must be a TensorDataset or a pair"):
        tsne.tsne_side_by_side({"net": ConvNet()}, small_digits.tensors[0])
    images, labels = small_digits.tensors
    with pytest.raises(TypeError, match="dataset's images must be a torch.Tensor"):
        tsne.tsne_side_by_side({"net": ConvNet()}, (images.numpy(), labels))
    with pytest.raises(ValueError, match="class_names has no entry for class 2"):
        tsne.tsne_side_by_side({"net": ConvNet()}, small_digits, class_names={0: "zero", 1: "one"})
    with pytest.raises(ValueError, match="num_images must be at least 2"):
        tsne.tsne_side_by_side({"net": ConvNet()}, small_digits, num_images=1)
