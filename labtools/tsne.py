"""Two-dimensional t-SNE maps of embeddings, coloured by class, with scikit-learn's TSNE.

Inputs are torch tensors or numpy arrays, checked like those of :mod:`labtools.viz`; the plotting
functions return a :class:`matplotlib.figure.Figure` and save it when given ``path``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from labtools.models import extract_features
from labtools.viz import ArrayLike, PathLike, Sizes, _as_numpy, _save

__all__ = ["tsne_embedding", "tsne_scatter", "tsne_side_by_side"]

#: Fewest points t-SNE is run on: one point leaves no neighbour and a perplexity of 0.
MIN_POINTS = 2
#: Width kept right of the side-by-side panels for the legend, in inches.
_LEGEND_INCHES = 1.0
#: OpenMP threads of scikit-learn's t-SNE (``None``: all cores). One thread gives the same map and
#: avoids the many-fold slowdown of several threads on a busy machine (a shared hub, a CI runner).
OPENMP_THREADS = 1


def tsne_embedding(features: ArrayLike, *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """t-SNE of ``features`` ``[N, D]`` (N >= 2, D >= 2): a float numpy array ``[N, 2]``.

    PCA initialisation and ``random_state=seed`` make the result the same on every call with the
    same inputs and seed. scikit-learn's t-SNE looks at the ``3 * perplexity`` nearest neighbours
    of each point, and there are only N - 1, so the perplexity used is
    ``min(perplexity, (N - 1) / 3)``: a small N lowers it instead of failing.
    """
    array = _as_numpy(features, "features", ["N", "D"]).astype(np.float32)
    n, d = array.shape
    if n < MIN_POINTS or d < 2:
        raise ValueError(f"features must have shape [N, D] with N >= {MIN_POINTS} and D >= 2, got {[n, d]}")
    if perplexity <= 0:
        raise ValueError(f"perplexity must be positive, got {perplexity}")
    tsne = TSNE(n_components=2, perplexity=min(perplexity, (n - 1) / 3), init="pca", random_state=seed)
    with threadpool_limits(OPENMP_THREADS, user_api="openmp"):
        return tsne.fit_transform(array)


def _legend_names(labels: np.ndarray, class_names: Sequence | Mapping | None) -> dict[int, str]:
    """Legend text of each class in ``labels`` ``[N]``: ``class_names[c]``, or ``c`` without names."""
    names = {}
    for c in np.unique(labels).tolist():
        try:
            names[c] = str(c) if class_names is None else str(class_names[c])
        except (IndexError, KeyError) as error:
            raise ValueError(f"class_names has no entry for class {c}") from error
    return names


def _scatter(
    ax, embedding: np.ndarray, labels: np.ndarray, names: dict[int, str], highlight: Collection[int]
) -> None:
    """Scatter ``embedding`` ``[N, 2]`` on ``ax``, one tab10 colour per class of ``labels`` ``[N]``.

    Colours follow the class id (class c gets tab10 colour c mod 10), so that panels agree; the
    legend text of class c is ``names[c]``. Classes in ``highlight`` get larger, black-edged markers.
    """
    for c, name in names.items():
        points = embedding[labels == c]
        marked = c in highlight
        ax.scatter(
            points[:, 0], points[:, 1], s=28 if marked else 8, color=f"C{int(c) % 10}",
            edgecolors="black" if marked else "none", linewidths=0.6, label=name,
            zorder=3 if marked else 2,
        )
    ax.set_xticks([])
    ax.set_yticks([])


def _as_labels(labels: ArrayLike, sizes: Sizes) -> np.ndarray:
    """Integer class ids ``[N]`` as a numpy array, N agreeing with ``sizes``."""
    labels = _as_numpy(labels, "labels", ["N"], sizes)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must hold integer class ids, got dtype {labels.dtype}")
    return labels


def tsne_scatter(
    features: ArrayLike,
    labels: ArrayLike,
    *,
    ax=None,
    title: str | None = None,
    seed: int = 0,
    class_names: Sequence | Mapping | None = None,
    highlight: Collection[int] | None = None,
    path: PathLike = None,
) -> Figure:
    """t-SNE map of ``features`` ``[N, D]`` coloured by the integer ``labels`` ``[N]``.

    Draws on ``ax`` when given (and returns its figure), else on a new figure. The legend, to the
    right of the axes, names the classes by ``class_names[c]`` (a list or a dict) or by their ids;
    the classes in ``highlight`` (e.g. held-out classes) have larger, black-edged markers.
    """
    sizes: Sizes = {}
    features = _as_numpy(features, "features", ["N", "D"], sizes)
    labels = _as_labels(labels, sizes)
    names = _legend_names(labels, class_names)
    embedding = tsne_embedding(features, seed=seed)
    if ax is None:
        fig = Figure(figsize=(6.5, 5))
        ax = fig.add_subplot()
    _scatter(ax, embedding, labels, names, set() if highlight is None else {int(c) for c in highlight})
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=1.5, frameon=False)
    if title is not None:
        ax.set_title(title)
    return _save(ax.figure, path)


def tsne_side_by_side(
    nets: Mapping,
    dataset,
    *,
    num_images: int | None = None,
    seed: int = 0,
    batch_size: int = 1000,
    device=None,
    class_names: Sequence | Mapping | None = None,
    path: PathLike = None,
) -> Figure:
    """t-SNE maps of several networks' features of one dataset, one panel per network.

    ``nets`` maps a name (the panel's title) to a network with ``.features``; ``dataset`` is a
    TensorDataset (or a pair) of images ``[N, 1, 28, 28]`` and integer labels ``[N]``, of which
    the first ``num_images`` (all by default) are embedded with
    :func:`labtools.models.extract_features`. One legend, right of the panels, names the classes.
    """
    if not isinstance(nets, Mapping) or not nets:
        raise ValueError("nets must be a non-empty dict name -> network")
    for name, net in nets.items():
        if not callable(getattr(net, "features", None)):
            raise TypeError(f"nets[{name!r}] must be a network with a .features method, got {type(net).__name__}")
    tensors = getattr(dataset, "tensors", dataset)
    if not isinstance(tensors, (tuple, list)) or len(tensors) != 2:
        raise TypeError(f"dataset must be a TensorDataset or a pair (images, labels), got {type(dataset).__name__}")
    images, labels = tensors
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"dataset's images must be a torch.Tensor, got {type(images).__name__}")
    if num_images is not None:
        if num_images < MIN_POINTS:
            raise ValueError(f"num_images must be at least {MIN_POINTS}, got {num_images}")
        images, labels = images[:num_images], labels[:num_images]
    sizes: Sizes = {}
    labels = _as_labels(labels, sizes)
    names = _legend_names(labels, class_names)
    fig = Figure(figsize=(5 * len(nets) + _LEGEND_INCHES, 5))
    axes = fig.subplots(1, len(nets), squeeze=False)[0]
    for ax, (name, net) in zip(axes, nets.items()):
        features = extract_features(net, images, batch_size=batch_size, device=device)
        features = _as_numpy(features, f"features of nets[{name!r}]", ["N", "D"], sizes)
        _scatter(ax, tsne_embedding(features, seed=seed), labels, names, set())
        ax.set_title(str(name))
    fig.tight_layout(rect=(0, 0, 1 - _LEGEND_INCHES / fig.get_figwidth(), 1))
    fig.legend(*axes[0].get_legend_handles_labels(), loc="center right", markerscale=1.5, frameon=False)
    return _save(fig, path)
