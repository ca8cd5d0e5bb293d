"""Figures of the labs: retrieval grids, precision-recall curves, training curves, bar charts,
explanation maps over images and confusion matrices.

Every function takes torch tensors or numpy arrays, checks their shapes (a ``ValueError`` names
the argument and the expected and actual shapes, a ``TypeError`` says when an argument is not a
tensor or an array) and returns a :class:`matplotlib.figure.Figure`. With ``path=...`` the figure
is also saved there (parent folders are created).

The figures are built with the object-oriented API and are not registered with pyplot, so they
never pile up in pyplot's state: in a notebook a figure shows when it is the value of the cell's
last line, or when passed to ``IPython.display.display``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = [
    "CORRECT_COLOR",
    "WRONG_COLOR",
    "QUERY_COLOR",
    "retrieval_grid",
    "pr_curves",
    "training_curves",
    "metric_curves",
    "correct_retrievals_bars",
    "per_class_bars",
    "show_images",
    "explanation_grid",
    "confusion_matrix",
]

ArrayLike = torch.Tensor | np.ndarray
PathLike = str | os.PathLike | None
#: Dimension name -> (length, the argument that fixed it); see :func:`_as_numpy`.
Sizes = dict[str, tuple[int, str]]

#: Frame colours of the retrieval grid: a retrieved image of the query's class, of another, the query.
CORRECT_COLOR = "tab:green"
WRONG_COLOR = "tab:red"
QUERY_COLOR = "tab:blue"

#: Side of one thumbnail of the retrieval grid, in inches.
THUMBNAIL_INCHES = 0.3
_SAVE_DPI = 150


def _as_numpy(
    value: ArrayLike,
    name: str,
    dims: Sequence[str] | None = None,
    sizes: Sizes | None = None,
    *,
    sequences: bool = False,
    expected: str | None = None,
) -> np.ndarray:
    """``value`` as a numpy array whose shape matches ``dims``, e.g. ``("Q", "K")`` for ``[Q, K]``.

    ``sizes`` binds dimension names to (length, argument that set it) across arguments: a name
    already in it must have that length, a new name is added, so that checking several arguments
    with one dict checks that they agree. Every named dimension must be non-empty. Lists and
    tuples are accepted only with ``sequences=True``; ``expected`` replaces the shape shown in
    error messages.
    """
    if isinstance(value, torch.Tensor):
        array = value.detach().cpu().numpy()
    elif isinstance(value, np.ndarray) or (sequences and isinstance(value, (list, tuple))):
        array = np.asarray(value)
    else:
        kinds = "a torch.Tensor, a numpy array or a list" if sequences else "a torch.Tensor or a numpy array"
        raise TypeError(f"{name} must be {kinds}, got {type(value).__name__}")
    if dims is None:
        return array
    sizes = {} if sizes is None else sizes
    if array.ndim != len(dims) or any(d in sizes and sizes[d][0] != n for d, n in zip(dims, array.shape)):
        shown = expected or "[" + ", ".join(dims) + "]"
        known = ", ".join(f"{d}={sizes[d][0]} (as in {sizes[d][1]})" for d in dims if d in sizes)
        shown += f" with {known}" if known else ""
        raise ValueError(f"{name} must have shape {shown}, got {list(array.shape)}")
    for d, n in zip(dims, array.shape):
        if n == 0:
            raise ValueError(f"{name} must not be empty along {d}, got shape {list(array.shape)}")
        sizes.setdefault(d, (n, name))
    return array


def _as_float(value, name: str) -> float:
    """A Python float from a number or a one-element tensor or array."""
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from error


def _as_images(value: ArrayLike, name: str, lead: Sequence[str], sizes: Sizes) -> np.ndarray:
    """Greyscale images ``[*lead, 1, H, W]`` or ``[*lead, H, W]`` as a numpy array ``[*lead, H, W]``."""
    array = _as_numpy(value, name)
    with_channel = "[" + ", ".join([*lead, "1", "H", "W"]) + "]"
    without = "[" + ", ".join([*lead, "H", "W"]) + "]"
    if array.ndim == len(lead) + 3 and array.shape[len(lead)] == 1:
        array = array.squeeze(len(lead))
    return _as_numpy(array, name, [*lead, "H", "W"], sizes, expected=f"{with_channel} or {without}")


def _query_ids(query_ids: ArrayLike | Sequence | None, sizes: Sizes) -> np.ndarray:
    """``query_ids`` ``[Q]`` as a numpy array, or the indices ``0 .. Q-1`` when ``None``."""
    if query_ids is None:
        return np.arange(sizes["Q"][0])
    return _as_numpy(query_ids, "query_ids", ["Q"], sizes, sequences=True)


def _grey_range(*arrays: np.ndarray) -> tuple[float, float]:
    """Colour limits shared by images: ``[0, 1]``, widened to the data's range if it exceeds it."""
    low = min(0.0, *(float(a.min()) for a in arrays))
    high = max(1.0, *(float(a.max()) for a in arrays))
    return low, high


def _show(ax, image: np.ndarray, limits: tuple[float, float]) -> None:
    """Draw one greyscale image ``[H, W]`` on ``ax`` without ticks or frame."""
    ax.imshow(image, cmap="gray", vmin=limits[0], vmax=limits[1], interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _save(fig: Figure, path: PathLike) -> Figure:
    """Save ``fig`` to ``path`` (creating its folder) when a path is given; return ``fig``."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=_SAVE_DPI, bbox_inches="tight")
    return fig


#: Layout of the retrieval grid's mosaic, in pixels: frame width, space between thumbnails, and the
#: extra space after the query column.
FRAME_PIXELS = 2
GAP_PIXELS = 2
QUERY_GAP_PIXELS = 10


def retrieval_grid(
    query_images: ArrayLike,
    retrieved_images: ArrayLike,
    query_labels: ArrayLike,
    retrieved_labels: ArrayLike,
    *,
    query_ids: ArrayLike | Sequence | None = None,
    path: PathLike = None,
) -> Figure:
    """One row per query: the query, then its top-K retrieved images in rank order.

    query_images ``[Q, 1, H, W]`` or ``[Q, H, W]``, retrieved_images ``[Q, K, 1, H, W]`` or
    ``[Q, K, H, W]``, query_labels ``[Q]``, retrieved_labels ``[Q, K]``; query_ids ``[Q]``
    (default: the row indices) label the rows at the left. The query has a :data:`QUERY_COLOR`
    frame; a retrieved image has a :data:`CORRECT_COLOR` frame when its label is the query's and a
    :data:`WRONG_COLOR` frame otherwise.

    The thumbnails are drawn as one RGB mosaic in a single axes (hundreds of axes would take
    seconds to draw): the thumbnail of row r, column c (c = 0 the query, c = k + 1 the k-th
    retrieved) starts at pixel ``y = r * (H + 2F + G)``, ``x = c * (W + 2F + G) + (c > 0) * QG``
    with F = :data:`FRAME_PIXELS`, G = :data:`GAP_PIXELS`, QG = :data:`QUERY_GAP_PIXELS`, and
    has a frame of F pixels around the H x W image.
    """
    from matplotlib.colors import to_rgb

    sizes: Sizes = {}
    queries = _as_images(query_images, "query_images", ["Q"], sizes)
    retrieved = _as_images(retrieved_images, "retrieved_images", ["Q", "K"], sizes)
    labels = _as_numpy(query_labels, "query_labels", ["Q"], sizes)
    found = _as_numpy(retrieved_labels, "retrieved_labels", ["Q", "K"], sizes)
    num_queries, k = found.shape
    ids = _query_ids(query_ids, sizes)
    low, high = _grey_range(queries, retrieved)
    h, w = queries.shape[1:]
    frame, step_y, step_x = FRAME_PIXELS, h + 2 * FRAME_PIXELS + GAP_PIXELS, w + 2 * FRAME_PIXELS + GAP_PIXELS

    tiles = np.concatenate([queries[:, None], retrieved], axis=1)  # [Q, K + 1, H, W]
    grey = np.clip((tiles - low) / (high - low), 0.0, 1.0)
    colors = np.where(found == labels[:, None], 1, 2)  # [Q, K]: 1 correct, 2 wrong; 0 the query
    colors = np.concatenate([np.zeros((num_queries, 1), dtype=int), colors], axis=1)
    palette = np.array([to_rgb(QUERY_COLOR), to_rgb(CORRECT_COLOR), to_rgb(WRONG_COLOR)])
    framed = np.broadcast_to(palette[colors][:, :, None, None, :],
                             (num_queries, k + 1, h + 2 * frame, w + 2 * frame, 3)).copy()
    framed[:, :, frame:frame + h, frame:frame + w, :] = grey[..., None]
    mosaic = np.ones((num_queries * step_y - GAP_PIXELS, (k + 1) * step_x - GAP_PIXELS + QUERY_GAP_PIXELS, 3))
    for column in range(k + 1):  # K + 1 slices, each holding a whole column of thumbnails
        x = column * step_x + (column > 0) * QUERY_GAP_PIXELS
        for_rows = np.arange(num_queries)[:, None] * step_y + np.arange(h + 2 * frame)[None, :]
        mosaic[for_rows.ravel(), x:x + w + 2 * frame] = framed[:, column].reshape(-1, w + 2 * frame, 3)

    left, right, top, bottom = 0.7, 0.1, 0.35, 0.1  # margins in thumbnails
    width = (mosaic.shape[1] / step_x + left + right) * THUMBNAIL_INCHES
    height = (mosaic.shape[0] / step_y + top + bottom) * THUMBNAIL_INCHES
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((left * THUMBNAIL_INCHES / width, bottom * THUMBNAIL_INCHES / height,
                       1 - (left + right) * THUMBNAIL_INCHES / width, 1 - (top + bottom) * THUMBNAIL_INCHES / height))
    ax.imshow(mosaic, interpolation="nearest", aspect="equal")
    ax.set_xticks([])
    ax.set_yticks(np.arange(num_queries) * step_y + frame + h / 2, [str(i) for i in ids], fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.text(frame + w / 2, -2, "query", ha="center", va="bottom", fontsize=8)
    ax.text(step_x + QUERY_GAP_PIXELS, -2, f"top {k} retrieved, closest first", ha="left", va="bottom", fontsize=8)
    return _save(fig, path)


def pr_curves(curves: Mapping[str, tuple], *, path: PathLike = None, title: str | None = None) -> Figure:
    """Precision-recall curves of several methods in one axes.

    ``curves`` maps a name to ``(recall, precision)``, two 1-d arrays ``[M]`` of one length
    (M may differ between names), or to ``(recall, precision, mAP)``, which adds "(mAP 0.xxx)"
    to the name in the legend.
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves must be a non-empty dict name -> (recall, precision[, mAP])")
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    for name, curve in curves.items():
        if not isinstance(curve, (tuple, list)) or len(curve) not in (2, 3):
            raise ValueError(f"curves[{name!r}] must be (recall, precision) or (recall, precision, mAP)")
        sizes: Sizes = {}
        recall = _as_numpy(curve[0], f"curves[{name!r}] recall", ["M"], sizes)
        precision = _as_numpy(curve[1], f"curves[{name!r}] precision", ["M"], sizes)
        label = str(name)
        if len(curve) == 3:
            label += f" (mAP {_as_float(curve[2], f'curves[{name!r}] mAP'):.3f})"
        ax.plot(recall, precision, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    if title is not None:
        ax.set_title(title)
    return _save(fig, path)


def _runs(history: Mapping) -> dict[str, Mapping]:
    """``{name: history}`` from one history (named "") or a dict of histories."""
    if not isinstance(history, Mapping) or not history:
        raise ValueError("history must be a non-empty dict of lists, or a dict name -> such a dict")
    nested = [isinstance(v, Mapping) for v in history.values()]
    if all(nested):
        return dict(history)
    if any(nested):
        raise ValueError("history mixes lists and dicts: give one history or a dict name -> history")
    return {"": history}


def training_curves(history: Mapping, *, path: PathLike = None) -> Figure:
    """Training loss per epoch, and validation accuracy per epoch when the history has it.

    ``history`` is a dict of per-epoch lists (or 1-d arrays) with ``"loss"`` ``[E]`` and optionally
    ``"val_accuracy"`` ``[E']`` in ``[0, 1]``; other keys are ignored. A dict name -> history
    overlays several runs, one colour per run in both panels. Epochs count from 1. The figure has
    one axes (loss), or two when any run has a validation accuracy.
    """
    runs = _runs(history)
    with_accuracy = any("val_accuracy" in run for run in runs.values())
    fig = Figure(figsize=(11 if with_accuracy else 6, 4))
    axes = fig.subplots(1, 2 if with_accuracy else 1, squeeze=False)[0]
    for i, (name, run) in enumerate(runs.items()):
        where = f"history[{name!r}]" if name else "history"
        if "loss" not in run:
            raise ValueError(f"{where} has no 'loss' list")
        loss = _as_numpy(run["loss"], f"{where}['loss']", ["epochs"], sequences=True)
        axes[0].plot(np.arange(1, len(loss) + 1), loss, marker=".", color=f"C{i}", label=name or None)
        if "val_accuracy" in run:
            key = f"{where}['val_accuracy']"
            accuracy = _as_numpy(run["val_accuracy"], key, ["epochs"], sequences=True)
            if accuracy.min() < 0 or accuracy.max() > 1:
                raise ValueError(f"{key} must lie in [0, 1], got {accuracy.min()} to {accuracy.max()}")
            epochs = np.arange(1, len(accuracy) + 1)
            axes[1].plot(epochs, accuracy, marker=".", color=f"C{i}", label=name or None)
    axes[0].set_ylabel("loss")
    if with_accuracy:
        axes[1].set_ylabel("validation accuracy")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if "" not in runs:
            ax.legend()
    fig.tight_layout()
    return _save(fig, path)


#: Line styles of the Recall@K panel of :func:`metric_curves`, in increasing K.
RECALL_STYLES = ("-", "--", "-.", ":")
#: The panels of :func:`metric_curves` after Recall@K: title -> history key.
METRIC_PANELS = {"P@1": "val_p_at_1", "mAP": "val_map", "NMI": "val_nmi"}


def metric_curves(history: Mapping, *, path: PathLike = None) -> Figure:
    """Validation metrics per epoch, as ``autograder.training.fit`` records them: Recall@K, P@1, mAP, NMI.

    ``history`` is a dict of per-epoch lists (or 1-d arrays) ``[E]`` of values in ``[0, 1]`` under
    the keys "val_recall_at_<K>" (up to four values of K), "val_p_at_1", "val_map" and "val_nmi";
    other keys (the loss, the learning rate) are ignored. A dict name -> history overlays several
    runs, one colour per run in every panel, named in a legend above the panels. One panel per
    metric that some run has, two a row: Recall@K (one line per K, styled by :data:`RECALL_STYLES`
    in increasing K, its legend "R@K" in those styles), then those of :data:`METRIC_PANELS`.
    Epochs count from 1. A history with none of these keys is refused.
    """
    runs = _runs(history)
    ks = sorted({int(match.group(1)) for run in runs.values() for key in run
                 if (match := re.fullmatch(r"val_recall_at_(\d+)", key))})
    if len(ks) > len(RECALL_STYLES):
        raise ValueError(f"metric_curves draws at most {len(RECALL_STYLES)} values of K, got Recall@K for K in {ks}")
    panels = {"Recall@K": [(f"val_recall_at_{k}", style) for k, style in zip(ks, RECALL_STYLES)]} if ks else {}
    panels.update({title: [(key, "-")] for title, key in METRIC_PANELS.items() if any(key in run for run in runs.values())})
    if not panels:
        raise ValueError("history has none of the validation metrics val_recall_at_<K>, val_p_at_1, val_map, "
                         "val_nmi (autograder.training.fit records them when given a val_set)")
    columns = min(2, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig = Figure(figsize=(5.5 * columns, 3.8 * rows + 0.4 * ("" not in runs)), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        fig.delaxes(ax)
    for ax, (title, curves) in zip(axes, panels.items()):
        for i, (name, run) in enumerate(runs.items()):
            where = f"history[{name!r}]" if name else "history"
            for key, style in curves:
                if key not in run:
                    continue
                values = _as_numpy(run[key], f"{where}[{key!r}]", ["epochs"], sequences=True)
                if not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
                    raise ValueError(f"{where}[{key!r}] must lie in [0, 1], got {values.min()} to {values.max()}")
                ax.plot(np.arange(1, len(values) + 1), values, marker=".", color=f"C{i}", linestyle=style)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("on the validation images")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if ks:
        axes[0].legend([Line2D([], [], color="0.3", linestyle=style) for style in RECALL_STYLES[: len(ks)]],
                       [f"R@{k}" for k in ks], fontsize="small")
    if "" not in runs:
        fig.legend([Line2D([], [], color=f"C{i}", marker=".") for i in range(len(runs))], list(runs),
                   loc="outside upper center", ncols=len(runs), frameon=False)
    return _save(fig, path)


def correct_retrievals_bars(
    counts: Mapping[str, ArrayLike],
    *,
    query_ids: ArrayLike | Sequence | None = None,
    k: int = 50,
    path: PathLike = None,
) -> Figure:
    """Grouped bars: how many of each query's top ``k`` retrieved images are of its class, per network.

    ``counts`` maps a network's name to ints ``[Q]`` in ``[0, k]``, one per query; all networks
    have the same Q. ``query_ids`` ``[Q]`` label the groups (default: the query indices).
    """
    if not isinstance(counts, Mapping) or not counts:
        raise ValueError("counts must be a non-empty dict name -> [Q] counts")
    sizes: Sizes = {}
    values = {name: _as_numpy(c, f"counts[{name!r}]", ["Q"], sizes) for name, c in counts.items()}
    for name, value in values.items():
        if value.min() < 0 or value.max() > k:
            raise ValueError(f"counts[{name!r}] must lie in [0, k={k}], got {value.min()} to {value.max()}")
    ids = _query_ids(query_ids, sizes)
    num_queries = len(ids)
    fig = Figure(figsize=(min(18.0, max(5.0, 0.15 * num_queries * (len(values) + 1) + 1.5)), 4))
    ax = fig.add_subplot()
    width = 0.8 / len(values)
    positions = np.arange(num_queries)
    for i, (name, value) in enumerate(values.items()):
        ax.bar(positions + (i - (len(values) - 1) / 2) * width, value, width=width, label=str(name))
    ax.set_xticks(positions, [str(i) for i in ids], rotation=90 if num_queries > 25 else 0)
    ax.set_xlim(-0.5, num_queries - 0.5)
    ax.set_xlabel("query")
    ax.set_ylabel(f"correct in top {k}")
    ax.set_ylim(0, k)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(values), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def per_class_bars(
    values: Mapping[str, ArrayLike | Sequence],
    *,
    ax=None,
    class_names: Sequence | None = None,
    highlight: Sequence[int] = (),
    ylabel: str = "value",
    title: str | None = None,
    path: PathLike = None,
) -> Figure:
    """Grouped bars of a per-class value: one group per class, one bar per entry of ``values``.

    ``values`` maps a name (a loss, a network) to floats ``[C]`` (tensors, arrays or lists), one per
    class; all entries have the same C. The groups are labelled by ``class_names`` (default: the
    class ids); the classes in ``highlight`` (e.g. those held out of training) get a grey
    background and a starred label.
    Draws on ``ax`` when given (and returns its figure), else on a new figure. A horizontal line
    marks 0, so that negative values (a rise instead of a drop) show.
    """
    if not isinstance(values, Mapping) or not values:
        raise ValueError("values must be a non-empty dict name -> [C] values per class")
    sizes: Sizes = {}
    arrays = {name: _as_numpy(v, f"values[{name!r}]", ["C"], sizes, sequences=True).astype(float)
              for name, v in values.items()}
    num_classes = sizes["C"][0]
    names = [str(c) for c in range(num_classes)] if class_names is None else [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(f"class_names must name the C={num_classes} classes, got {len(names)} names")
    marked = {int(c) for c in highlight}
    if any(not 0 <= c < num_classes for c in marked):
        raise ValueError(f"highlight must hold class ids in 0..{num_classes - 1}, got {sorted(marked)}")
    if ax is None:
        fig = Figure(figsize=(min(18.0, max(6.0, 0.12 * num_classes * (len(arrays) + 1) + 1.5)), 4))
        ax = fig.add_subplot()
    width = 0.8 / len(arrays)
    positions = np.arange(num_classes)
    for c in sorted(marked):
        ax.axvspan(c - 0.5, c + 0.5, color="0.9", zorder=0)
    for i, (name, value) in enumerate(arrays.items()):
        ax.bar(positions + (i - (len(arrays) - 1) / 2) * width, value, width=width, label=str(name), zorder=2)
    ax.axhline(0.0, color="black", linewidth=0.8, zorder=3)
    ax.set_xticks(positions, [f"{n}*" if c in marked else n for c, n in enumerate(names)],
                  rotation=45 if max(map(len, names)) > 3 else 0, ha="right" if max(map(len, names)) > 3 else "center")
    ax.set_xlim(-0.5, num_classes - 0.5)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small", frameon=False)
    ax.figure.tight_layout()
    return _save(ax.figure, path)


def show_images(
    images: ArrayLike, labels: ArrayLike | Sequence | None = None, *, ncols: int = 10, path: PathLike = None
) -> Figure:
    """A grid of greyscale images ``[N, 1, H, W]`` or ``[N, H, W]``, ``ncols`` per row.

    ``labels`` ``[N]``, when given, are the images' titles. The figure has N axes.
    """
    if ncols < 1:
        raise ValueError(f"ncols must be positive, got {ncols}")
    sizes: Sizes = {}
    array = _as_images(images, "images", ["N"], sizes)
    titles = None if labels is None else _as_numpy(labels, "labels", ["N"], sizes, sequences=True)
    n = len(array)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(1.0 * ncols, (1.0 + 0.25 * (titles is not None)) * nrows))
    limits = _grey_range(array)
    for i in range(n):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        _show(ax, array[i], limits)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


#: Colormap and opacity of the maps that :func:`explanation_grid` lays over the images.
OVERLAY_CMAP = "jet"
OVERLAY_ALPHA = 0.5


def _maps(value: ArrayLike, name: str, sizes: Sizes) -> np.ndarray:
    """Non-negative, finite maps ``[N, H, W]`` as a float numpy array, N, H and W agreeing with ``sizes``."""
    array = _as_numpy(value, name, ["N", "H", "W"], sizes)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, got {int((~np.isfinite(array)).sum())} NaN or infinite values")
    if array.min() < 0:
        raise ValueError(f"{name} must be non-negative, got values down to {array.min():.3g}")
    return array


def explanation_grid(
    images: ArrayLike,
    maps: Mapping[str, ArrayLike],
    *,
    titles: ArrayLike | Sequence | None = None,
    path: PathLike = None,
) -> Figure:
    """Images and maps of what explains them (Grad-CAM, similarity maps): one column per image.

    images ``[N, 1, H, W]`` or ``[N, H, W]``; ``maps`` maps a name (e.g. "Grad-CAM", "similarity")
    to non-negative, finite maps ``[N, H, W]`` (tensors or arrays), one per image. The first row
    shows the images in grey (y-label "image"); then comes one row per entry of ``maps``, in its
    order, with the name as the y-label at its left: each image in grey under its map in
    :data:`OVERLAY_CMAP` at opacity :data:`OVERLAY_ALPHA`. Each map ``[H, W]`` is scaled to its own
    maximum (the top of the colormap), so its colours compare the places of one image, not images
    or maps; an all-zero map is not drawn, and the image shows alone. ``titles`` ``[N]`` (strings
    or numbers), when given, are the columns' titles. The figure has ``(1 + len(maps)) * N`` axes,
    row by row.
    """
    if not isinstance(maps, Mapping) or not maps:
        raise ValueError("maps must be a non-empty dict name -> [N, H, W] maps, e.g. {'Grad-CAM': ...}")
    sizes: Sizes = {}
    array = _as_images(images, "images", ["N"], sizes)
    overlays = {str(name): _maps(value, f"maps[{name!r}]", sizes) for name, value in maps.items()}
    names = None if titles is None else _as_numpy(titles, "titles", ["N"], sizes, sequences=True)
    n = len(array)
    fig = Figure(figsize=(1.0 * n + 0.5, 1.0 * (1 + len(overlays)) + 0.25 * (names is not None)))
    axes = fig.subplots(1 + len(overlays), n, squeeze=False)
    limits = _grey_range(array)
    for column in range(n):
        _show(axes[0, column], array[column], limits)
        if names is not None:
            axes[0, column].set_title(str(names[column]), fontsize=9)
    axes[0, 0].set_ylabel("image", fontsize=9)
    for row, (name, overlay) in enumerate(overlays.items(), start=1):
        tops = overlay.max(axis=(1, 2))
        for column in range(n):
            ax = axes[row, column]
            _show(ax, array[column], limits)
            if tops[column] > 0:
                ax.imshow(overlay[column] / tops[column], cmap=OVERLAY_CMAP, alpha=OVERLAY_ALPHA, vmin=0.0,
                          vmax=1.0, interpolation="nearest")
        axes[row, 0].set_ylabel(name, fontsize=9)
    fig.tight_layout(pad=0.3, h_pad=0.2, w_pad=0.2)
    return _save(fig, path)


#: Colormap of :func:`confusion_matrix`: the higher the count, the darker the cell.
CONFUSION_CMAP = "Blues"
#: Colour of the zero counts of :func:`confusion_matrix`, lighter than the others so that errors stand out.
ZERO_COLOR = "0.6"


def _class_ids(value: ArrayLike | Sequence, name: str, dim: str, sizes: Sizes) -> np.ndarray:
    """Distinct integer class ids ``[dim]`` as a numpy array, their number agreeing with ``sizes``."""
    ids = _as_numpy(value, name, [dim], sizes, sequences=True)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class ids, got dtype {ids.dtype}")
    repeated = sorted({int(c) for c in ids if (ids == c).sum() > 1})
    if repeated:
        raise ValueError(f"{name} must name each class once, got {', '.join(map(str, repeated))} more than once")
    return ids


def _class_name(c: int, class_names: Sequence | Mapping | None) -> str:
    """``class_names[c]`` (a list indexed by class id, or a dict) as a string, or ``c`` without names."""
    if class_names is None:
        return str(c)
    if not isinstance(class_names, Mapping) and not 0 <= c < len(class_names):
        raise ValueError(f"class_names has no entry for class {c}: it names classes 0..{len(class_names) - 1}")
    try:
        return str(class_names[c])
    except (IndexError, KeyError) as error:
        raise ValueError(f"class_names has no entry for class {c}") from error


def confusion_matrix(
    confusion: ArrayLike | Sequence,
    rows: ArrayLike | Sequence,
    columns: ArrayLike | Sequence,
    *,
    class_names: Sequence | Mapping | None = None,
    highlight: Collection[int] = (),
    title: str | None = None,
    ax=None,
    path: PathLike = None,
) -> Figure:
    """A confusion matrix as an image, each count written in its cell.

    ``confusion``: integer counts ``[R, C]``, row i counting the queries of the true class
    ``rows[i]`` by their predicted class ``columns[j]``; ``rows`` ``[R]`` and ``columns`` ``[C]``:
    distinct class ids. :func:`labtools.errors.class_report` returns the three under "confusion",
    "classes" and "columns". The higher a count, the darker its cell (:data:`CONFUSION_CMAP`, from
    0 to the largest count); counts are written white on dark cells, black on light ones, zeros in
:data:`ZERO_COLOR`. Tick
    labels are ``class_names[c]`` (a list indexed by class id, or a dict) or the ids; the classes in
    ``highlight`` (e.g. the unseen classes), which must be among the rows or columns, have bold,
    starred labels on both axes. x-label "predicted", y-label "true". Draws on ``ax`` when given
    (and returns its figure), else on a new figure.
    """
    sizes: Sizes = {}
    counts = _as_numpy(confusion, "confusion", ["R", "C"], sizes, sequences=True)
    if not np.issubdtype(counts.dtype, np.integer):
        raise TypeError(f"confusion must hold integer counts, got dtype {counts.dtype}")
    if counts.min() < 0:
        raise ValueError(f"confusion must hold counts >= 0, got {counts.min()}")
    true = _class_ids(rows, "rows", "R", sizes).tolist()
    predicted = _class_ids(columns, "columns", "C", sizes).tolist()
    marked = {int(c) for c in highlight}
    if marked - set(true) - set(predicted):
        known = ", ".join(map(str, sorted(set(true) | set(predicted))))
        raise ValueError(f"highlight must hold classes of rows or columns ({known}), got "
                         f"{', '.join(map(str, sorted(marked)))}")
    names = {c: _class_name(c, class_names) + ("*" if c in marked else "") for c in {*true, *predicted}}
    num_rows, num_columns = counts.shape
    own_figure = ax is None
    if own_figure:
        fig = Figure(figsize=(max(4.0, 0.5 * num_columns + 2.0), max(2.5, 0.5 * num_rows + 1.6)))
        ax = fig.add_subplot()
    image = ax.imshow(counts, cmap=CONFUSION_CMAP, vmin=0, vmax=max(1, int(counts.max())), interpolation="nearest")
    fontsize = max(5.0, min(9.0, 90.0 / max(num_rows, num_columns)))
    for i, j in np.ndindex(counts.shape):
        red, green, blue, _ = image.cmap(image.norm(counts[i, j]))
        dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
        ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=fontsize,
                color="white" if dark else "black" if counts[i, j] else ZERO_COLOR)
    long = max(map(len, names.values())) > 3
    ax.set_xticks(np.arange(num_columns), [names[c] for c in predicted], rotation=45 if long else 0,
                  ha="right" if long else "center")
    ax.set_yticks(np.arange(num_rows), [names[c] for c in true])
    for labels, classes in ((ax.get_xticklabels(), predicted), (ax.get_yticklabels(), true)):
        for label, c in zip(labels, classes):
            label.set_fontweight("bold" if c in marked else "normal")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title is not None:
        ax.set_title(title)
    if own_figure:
        fig.tight_layout()
    return _save(ax.figure, path)
