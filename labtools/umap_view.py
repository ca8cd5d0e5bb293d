"""Two-dimensional UMAP maps of embeddings, the test images' drawn over the training images'.

UMAP (McInnes, Healy and Melville, 2018; the umap-learn package) keeps each point's nearest
neighbours near, like t-SNE (:mod:`labtools.tsne`), and also the layout of the clusters better.
Inputs are torch tensors or numpy arrays, checked like those of :mod:`labtools.viz`; the plotting
function returns a :class:`matplotlib.figure.Figure` and saves it when given ``path``.

umap and numba are imported by the functions, not by this module, so that importing it stays
cheap; numba compiles UMAP's functions on the first call of a session, which makes that call slower.
"""

from __future__ import annotations

import numbers
from collections.abc import Collection, Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from labtools.viz import ArrayLike, PathLike, Sizes, _as_float, _as_numpy, _save

__all__ = ["umap_embedding", "train_test_scatter"]

#: Markers of :func:`train_test_scatter`, as keyword arguments of ``Axes.scatter``: the training
#: embeddings (small, faint dots), the test embeddings (larger, dark-edged), and the larger,
#: black-edged markers of the classes in ``highlight`` in each set.
TRAIN_STYLE = {"s": 8, "alpha": 0.35, "edgecolors": "none", "zorder": 1}
TEST_STYLE = {"s": 22, "alpha": 0.7, "edgecolors": "0.25", "linewidths": 0.5, "zorder": 3}
TRAIN_HIGHLIGHT_STYLE = {"s": 18, "alpha": 0.5, "edgecolors": "black", "linewidths": 0.3, "zorder": 2}
TEST_HIGHLIGHT_STYLE = {"s": 45, "alpha": 0.75, "edgecolors": "black", "linewidths": 1.0, "zorder": 4}


def _finite(value: ArrayLike, name: str, dims: Sequence[str], sizes: Sizes) -> np.ndarray:
    """Finite features of shape ``dims`` as a float32 numpy array, their sizes agreeing with ``sizes``."""
    array = _as_numpy(value, name, dims, sizes)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    array = array.astype(np.float32)
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise ValueError(f"{name} must be finite, got NaN or infinite values in {int(bad.sum())} of its "
                         f"{len(array)} rows (the first: row {int(np.argmax(bad))})")
    return array


def _check_options(rows: int, what: str, n_neighbors, min_dist) -> None:
    """Refuse an ``n_neighbors`` or ``min_dist`` that UMAP cannot use on ``rows`` rows (of ``what``)."""
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, numbers.Integral) or n_neighbors < 2:
        raise ValueError(f"n_neighbors must be an integer >= 2, got {n_neighbors!r}")
    min_dist = _as_float(min_dist, "min_dist")
    if not 0.0 <= min_dist <= 1.0:
        raise ValueError(f"min_dist must lie in [0, 1], got {min_dist}")
    if rows <= n_neighbors:
        raise ValueError(f"{what} must have more than n_neighbors={n_neighbors} rows (UMAP links each point to "
                         f"its {n_neighbors} nearest neighbours), got {rows}: give more rows or a smaller n_neighbors")


def _fit(array: np.ndarray, seed: int, n_neighbors: int, min_dist: float) -> np.ndarray:
    """UMAP of checked features ``[N, D]``: ``[N, 2]``."""
    import umap

    # random_state makes UMAP single-threaded; n_jobs=1 says so, which spares umap's warning about it
    reducer = umap.UMAP(n_components=2, n_neighbors=int(n_neighbors), min_dist=float(min_dist),
                        metric="euclidean", random_state=seed, n_jobs=1)
    return reducer.fit_transform(array)


def umap_embedding(features: ArrayLike, *, seed: int = 0, n_neighbors: int = 15,
                   min_dist: float = 0.1) -> np.ndarray:
    """UMAP of ``features`` ``[N, D]`` (finite, N > n_neighbors): a float32 numpy array ``[N, 2]``.

    Euclidean distances between the rows; ``n_neighbors`` (>= 2) is the number of neighbours each
    point is linked to (more: a more global layout), ``min_dist`` in ``[0, 1]`` how tightly the
    points of a cluster may pack. ``random_state=seed`` makes the result the same on every call
    with the same inputs and seed (and UMAP single-threaded).
    """
    array = _finite(features, "features", ["N", "D"], {})
    _check_options(len(array), "features", n_neighbors, min_dist)
    return _fit(array, seed, n_neighbors, min_dist)


def _labels(value: ArrayLike, name: str, dim: str, sizes: Sizes) -> np.ndarray:
    """Integer class ids ``[dim]`` as a numpy array, their number agreeing with ``sizes``."""
    labels = _as_numpy(value, name, [dim], sizes)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class ids, got dtype {labels.dtype}")
    return labels


def _class_color(c: int) -> tuple:
    """tab10 colour ``c mod 10`` of class ``c``, the colour :mod:`labtools.tsne` gives it by default."""
    return colormaps["tab10"].colors[int(c) % 10]


def train_test_scatter(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    test_labels: ArrayLike,
    *,
    ax=None,
    title: str | None = None,
    class_names: Sequence | Mapping | None = None,
    highlight: Collection[int] = (),
    seed: int = 0,
    n_neighbors: int = 15,
    path: PathLike = None,
) -> Figure:
    """One UMAP map of training and test embeddings: where the test images fall among the training ones.

    train_features ``[N, D]`` with integer train_labels ``[N]``, test_features ``[M, D]`` with
    test_labels ``[M]``, all features finite and N + M > n_neighbors. One :func:`umap_embedding`
    (``seed``, ``n_neighbors``, min_dist 0.1) is fitted on the rows of both, stacked (train first), and drawn in
    one view: the training embeddings as small, faint dots (:data:`TRAIN_STYLE`), the test
    embeddings over them as larger markers with a dark edge (:data:`TEST_STYLE`), class c in tab10
    colour c mod 10 in both. The classes in ``highlight`` (e.g. the unseen classes), which must be
    among the labels, get larger, black-edged markers (:data:`TRAIN_HIGHLIGHT_STYLE`,
    :data:`TEST_HIGHLIGHT_STYLE`) and a starred name. The legend, right of the axes, names the
    classes by ``class_names[c]`` (a list or a dict) or their ids, then shows the train and the
    test marker. One collection per class of each set, train first, classes in increasing order,
    each with the gid "train <c>" or "test <c>". Draws on ``ax`` when given (and returns its
    figure), else on a new figure.
    """
    from labtools.tsne import _legend_names

    sizes: Sizes = {}
    train = _finite(train_features, "train_features", ["N", "D"], sizes)
    train_classes = _labels(train_labels, "train_labels", "N", sizes)
    test = _finite(test_features, "test_features", ["M", "D"], sizes)
    test_classes = _labels(test_labels, "test_labels", "M", sizes)
    _check_options(len(train) + len(test), f"train_features and test_features together ({len(train)} + "
                   f"{len(test)} rows)", n_neighbors, 0.1)
    classes = np.concatenate([train_classes, test_classes])
    marked = {int(c) for c in highlight}
    if marked - set(classes.tolist()):
        known = ", ".join(map(str, np.unique(classes).tolist()))
        raise ValueError(f"highlight must hold classes of the labels ({known}), got "
                         f"{', '.join(map(str, sorted(marked)))}")
    names = {c: name + ("*" if c in marked else "") for c, name in _legend_names(classes, class_names).items()}
    embedding = _fit(np.concatenate([train, test]), seed, n_neighbors, 0.1)
    if ax is None:
        fig = Figure(figsize=(7.5, 5.5))
        ax = fig.add_subplot()
    for which, points, labels in (("train", embedding[: len(train)], train_classes),
                                  ("test", embedding[len(train):], test_classes)):
        for c in np.unique(labels).tolist():
            style = {("train", False): TRAIN_STYLE, ("train", True): TRAIN_HIGHLIGHT_STYLE,
                     ("test", False): TEST_STYLE, ("test", True): TEST_HIGHLIGHT_STYLE}[which, c in marked]
            mine = points[labels == c]
            ax.scatter(mine[:, 0], mine[:, 1], color=_class_color(c), gid=f"{which} {c}", **style)
    handles = [Line2D([], [], linestyle="none", marker="o", markersize=8 if c in marked else 6,
                      markerfacecolor=_class_color(c), markeredgecolor="black" if c in marked else "none",
                      markeredgewidth=1.2 if c in marked else 0, label=name) for c, name in names.items()]
    handles += [Line2D([], [], linestyle="none", marker="o", markersize=3, markerfacecolor="0.5", alpha=0.5,
                       markeredgecolor="none", label="train"),
                Line2D([], [], linestyle="none", marker="o", markersize=6, markerfacecolor="0.6",
                       markeredgecolor="0.25", markeredgewidth=0.5, label="test")]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title)
    return _save(ax.figure, path)
