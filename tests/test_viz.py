"""labtools.viz: shapes checked, the right artists drawn, figures saved, numpy and torch inputs."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from labtools import viz  # noqa: E402
from labtools.data import digits_dataset  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def digits():
    return digits_dataset().tensors


@pytest.fixture
def grid_inputs(digits):
    """Q=3 queries with K=4 retrieved images each, and labels with a known pattern of matches."""
    images, labels = digits
    query_index = torch.tensor([0, 1, 2])
    retrieved_index = torch.tensor([[10, 11, 12, 13], [20, 21, 22, 23], [30, 31, 32, 33]])
    return images[query_index], images[retrieved_index], labels[query_index], labels[retrieved_index]


def assert_png(path):
    assert path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def thumbnail(mosaic, row, column, h=28, w=28):
    """The framed thumbnail [H + 2F, W + 2F, 3] of ``row``, ``column`` (0 the query) of the mosaic."""
    f = viz.FRAME_PIXELS
    y = row * (h + 2 * f + viz.GAP_PIXELS)
    x = column * (w + 2 * f + viz.GAP_PIXELS) + (column > 0) * viz.QUERY_GAP_PIXELS
    return mosaic[y:y + h + 2 * f, x:x + w + 2 * f]


def assert_framed(tile, color, image):
    f = viz.FRAME_PIXELS
    rgb = np.array(to_rgba(color)[:3])
    border = np.concatenate([tile[:f].reshape(-1, 3), tile[-f:].reshape(-1, 3),
                             tile[:, :f].reshape(-1, 3), tile[:, -f:].reshape(-1, 3)])
    assert np.allclose(border, rgb), f"frame is not {color}"
    inside = tile[f:-f, f:-f]
    assert np.allclose(inside, np.clip(image, 0, 1)[..., None].repeat(3, axis=-1), atol=1e-6)


def test_retrieval_grid_draws_every_image_framed_by_correctness(grid_inputs):
    queries, retrieved, query_labels, retrieved_labels = grid_inputs
    fig = viz.retrieval_grid(queries, retrieved, query_labels, retrieved_labels)
    try:
        assert isinstance(fig, Figure) and len(fig.axes) == 1 and len(fig.axes[0].images) == 1
        mosaic = np.asarray(fig.axes[0].images[0].get_array())
        q, k = retrieved_labels.shape
        expected = (retrieved_labels == query_labels[:, None]).numpy()
        assert expected.any() and not expected.all(), "the fixture mixes matches and misses"
        for row in range(q):
            assert_framed(thumbnail(mosaic, row, 0), viz.QUERY_COLOR, queries[row, 0].numpy())
            for rank in range(k):
                wanted = viz.CORRECT_COLOR if expected[row, rank] else viz.WRONG_COLOR
                assert_framed(thumbnail(mosaic, row, rank + 1), wanted, retrieved[row, rank, 0].numpy())
        assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["0", "1", "2"]
        assert not fig.axes[0].get_xticks().size
    finally:
        plt.close(fig)


def test_retrieval_grid_takes_numpy_without_channel_and_names_queries(grid_inputs):
    queries, retrieved, query_labels, retrieved_labels = (t.numpy() for t in grid_inputs)
    fig = viz.retrieval_grid(
        queries[:, 0], retrieved[:, :, 0], query_labels, retrieved_labels, query_ids=[101, 202, 303]
    )
    try:
        assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["101", "202", "303"]
        assert_framed(thumbnail(np.asarray(fig.axes[0].images[0].get_array()), 2, 0), viz.QUERY_COLOR,
                      queries[2, 0])
    finally:
        plt.close(fig)


def test_retrieval_grid_of_fifty_has_small_thumbnails(digits):
    images, labels = digits
    retrieved = torch.arange(250).reshape(5, 50)
    fig = viz.retrieval_grid(images[:5], images[retrieved], labels[:5], labels[retrieved])
    try:
        width, height = fig.get_size_inches()
        assert 51 * 0.25 < width < 51 * 0.45
        assert height < 4
    finally:
        plt.close(fig)


@pytest.mark.parametrize(
    "argument, replace",
    [
        ("query_images", lambda a: (torch.rand(3, 3, 28, 28), *a[1:])),
        ("retrieved_images", lambda a: (a[0], torch.rand(3, 28, 28), *a[2:])),
        ("retrieved_images", lambda a: (a[0], torch.rand(2, 4, 1, 28, 28), *a[2:])),
        ("retrieved_images", lambda a: (a[0], torch.rand(3, 4, 1, 20, 20), *a[2:])),
        ("query_labels", lambda a: (*a[:2], torch.zeros(4, dtype=torch.long), a[3])),
        ("retrieved_labels", lambda a: (*a[:3], torch.zeros(3, 5, dtype=torch.long))),
        ("retrieved_labels", lambda a: (*a[:3], torch.zeros(12, dtype=torch.long))),
    ],
)
def test_retrieval_grid_rejects_wrong_shapes_naming_the_argument(grid_inputs, argument, replace):
    with pytest.raises(ValueError, match=rf"^{argument} must have shape .*got \["):
        viz.retrieval_grid(*replace(grid_inputs))


def test_shape_errors_give_expected_and_actual_shapes(grid_inputs):
    queries, retrieved, query_labels, _ = grid_inputs
    wrong = torch.zeros(3, 5, dtype=torch.long)
    message = r"retrieved_labels must have shape \[Q, K\] with Q=3 .*K=4 \(as in retrieved_images\), got \[3, 5\]"
    with pytest.raises(ValueError, match=message):
        viz.retrieval_grid(queries, retrieved, query_labels, wrong)


def test_retrieval_grid_rejects_lists_and_wrong_query_ids(grid_inputs):
    queries, retrieved, query_labels, retrieved_labels = grid_inputs
    with pytest.raises(TypeError, match="query_images must be a torch.Tensor or a numpy array, got list"):
        viz.retrieval_grid(queries.tolist(), retrieved, query_labels, retrieved_labels)
    with pytest.raises(ValueError, match="query_ids must have shape"):
        viz.retrieval_grid(queries, retrieved, query_labels, retrieved_labels, query_ids=[1, 2])


def test_every_figure_saves_a_png_creating_folders(tmp_path, grid_inputs, digits):
    images, labels = digits
    recall, precision = torch.linspace(0, 1, 20), torch.linspace(1, 0.1, 20)
    makers = {
        "grid": lambda p: viz.retrieval_grid(*grid_inputs, path=p),
        "pr": lambda p: viz.pr_curves({"net": (recall, precision)}, path=p),
        "training": lambda p: viz.training_curves({"loss": [1.0, 0.5]}, path=p),
        "bars": lambda p: viz.correct_retrievals_bars({"net": torch.tensor([1, 2])}, path=p),
        "images": lambda p: viz.show_images(images[:5], labels[:5], path=p),
    }
    for name, make in makers.items():
        path = tmp_path / "nested" / name / f"{name}.png"
        fig = make(str(path) if name == "pr" else path)
        try:
            assert isinstance(fig, Figure)
            assert_png(path)
        finally:
            plt.close(fig)


def test_figures_stay_out_of_pyplot(grid_inputs):
    before = plt.get_fignums()
    fig = viz.retrieval_grid(*grid_inputs)
    assert plt.get_fignums() == before
    plt.close(fig)


def test_pr_curves_one_line_per_entry_with_map_in_legend():
    recall = np.linspace(0.01, 1, 50)
    curves = {
        "cross-entropy": (torch.from_numpy(recall), torch.from_numpy(1 - 0.5 * recall), 0.75),
        "triplet": (recall[:30], 1 - 0.3 * recall[:30], torch.tensor(0.8123)),
        "pixels": (recall, 0.5 * np.ones(50)),
    }
    fig = viz.pr_curves(curves, title="MNIST")
    try:
        (ax,) = fig.axes
        assert len(ax.lines) == 3
        assert [len(line.get_xdata()) for line in ax.lines] == [50, 30, 50]
        legend = [text.get_text() for text in ax.get_legend().get_texts()]
        assert legend == ["cross-entropy (mAP 0.750)", "triplet (mAP 0.812)", "pixels"]
        assert ax.get_xlabel() == "Recall" and ax.get_ylabel() == "Precision"
        assert ax.get_xlim() == (0, 1) and ax.get_ylim() == (0, 1.02)
        assert ax.get_title() == "MNIST"
    finally:
        plt.close(fig)


def test_pr_curves_rejects_bad_curves():
    with pytest.raises(ValueError, match=r"curves\['a'\] precision must have shape \[M\] with M=10"):
        viz.pr_curves({"a": (torch.rand(10), torch.rand(9))})
    with pytest.raises(ValueError, match=r"curves\['a'\] recall must have shape \[M\]"):
        viz.pr_curves({"a": (torch.rand(2, 10), torch.rand(10))})
    with pytest.raises(ValueError, match=r"curves\['a'\] must be \(recall, precision\)"):
        viz.pr_curves({"a": torch.rand(2, 10)})
    with pytest.raises(ValueError, match="non-empty dict"):
        viz.pr_curves({})
    with pytest.raises(TypeError, match=r"curves\['a'\] mAP must be a number"):
        viz.pr_curves({"a": (torch.rand(10), torch.rand(10), "high")})


def test_training_curves_loss_only_has_one_panel():
    fig = viz.training_curves({"loss": [2.0, 1.0, 0.5], "epoch_s": [3.0, 3.0, 3.0]})
    try:
        (ax,) = fig.axes
        (line,) = ax.lines
        assert list(line.get_xdata()) == [1, 2, 3]
        assert list(line.get_ydata()) == [2.0, 1.0, 0.5]
        assert ax.get_ylabel() == "loss" and ax.get_xlabel() == "epoch"
        assert ax.get_legend() is None
    finally:
        plt.close(fig)


def test_training_curves_adds_a_validation_panel():
    fig = viz.training_curves({"loss": np.array([2.0, 1.0]), "val_accuracy": torch.tensor([0.5, 0.9])})
    try:
        loss_ax, accuracy_ax = fig.axes
        assert accuracy_ax.get_ylabel() == "validation accuracy"
        assert list(accuracy_ax.lines[0].get_xdata()) == [1, 2]
        assert np.allclose(accuracy_ax.lines[0].get_ydata(), [0.5, 0.9])
    finally:
        plt.close(fig)


def test_training_curves_overlays_runs():
    runs = {
        "cross-entropy": {"loss": [2.0, 1.0, 0.5], "val_accuracy": [0.5, 0.8, 0.9]},
        "triplet": {"loss": [0.9, 0.4]},
    }
    fig = viz.training_curves(runs)
    try:
        loss_ax, accuracy_ax = fig.axes
        assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["cross-entropy", "triplet"]
        assert len(accuracy_ax.lines) == 1
        assert loss_ax.lines[0].get_color() == accuracy_ax.lines[0].get_color()
        assert loss_ax.lines[0].get_color() != loss_ax.lines[1].get_color()
    finally:
        plt.close(fig)


def test_training_curves_rejects_bad_histories():
    with pytest.raises(ValueError, match="has no 'loss'"):
        viz.training_curves({"val_accuracy": [0.5]})
    with pytest.raises(ValueError, match=r"history\['triplet'\] has no 'loss'"):
        viz.training_curves({"triplet": {"accuracy": [0.5]}})
    with pytest.raises(ValueError, match="mixes lists and dicts"):
        viz.training_curves({"loss": [1.0], "run": {"loss": [1.0]}})
    with pytest.raises(ValueError, match=r"history\['val_accuracy'\] must lie in \[0, 1\]"):
        viz.training_curves({"loss": [1.0], "val_accuracy": [95.0]})
    with pytest.raises(ValueError, match=r"history\['loss'\] must have shape \[epochs\]"):
        viz.training_curves({"loss": [[1.0, 2.0]]})
    with pytest.raises(TypeError, match=r"history\['loss'\] must be"):
        viz.training_curves({"loss": 1.0})


def metric_history(shift=0.0):
    """A history as autograder.training.fit records it with a val_set: 3 epochs."""
    return {"loss": [2.0, 1.0, 0.5], "lr": [0.1] * 3,
            **{f"val_recall_at_{k}": [0.5 + shift + k / 100, 0.6 + shift + k / 100, 0.7 + shift + k / 100]
               for k in (8, 1, 4, 2)},
            "val_p_at_1": [0.51 + shift, 0.61 + shift, 0.71 + shift], "val_map": np.array([0.3, 0.4, 0.5]) + shift,
            "val_nmi": torch.tensor([0.2, 0.25, 0.3]) + shift}


def test_metric_curves_one_panel_per_metric_one_line_per_k(tmp_path):
    history = metric_history()
    fig = viz.metric_curves(history, path=tmp_path / "curves.png")
    try:
        assert_png(tmp_path / "curves.png")
        recall, p1, map_, nmi = fig.axes
        assert [ax.get_title() for ax in fig.axes] == ["Recall@K", "P@1", "mAP", "NMI"]
        assert [line.get_linestyle() for line in recall.lines] == ["-", "--", "-.", ":"]  # K = 1, 2, 4, 8
        for line, k in zip(recall.lines, (1, 2, 4, 8)):
            assert list(line.get_xdata()) == [1, 2, 3]
            assert np.allclose(line.get_ydata(), history[f"val_recall_at_{k}"])
        assert [t.get_text() for t in recall.get_legend().get_texts()] == ["R@1", "R@2", "R@4", "R@8"]
        for ax, key in ((p1, "val_p_at_1"), (map_, "val_map"), (nmi, "val_nmi")):
            (line,) = ax.lines
            assert np.allclose(line.get_ydata(), np.asarray(history[key])) and ax.get_xlabel() == "epoch"
            assert ax.get_legend() is None
        assert not fig.legends  # one run: no run names
    finally:
        plt.close(fig)


def test_metric_curves_overlays_runs_and_keeps_the_panels_some_run_has():
    partial = {key: value for key, value in metric_history(0.1).items() if key in ("loss", "val_map", "val_nmi")}
    fig = viz.metric_curves({"cross-entropy": metric_history(), "triplet": partial})
    try:
        recall, p1, map_, nmi = fig.axes
        assert len(recall.lines) == 4 and len(p1.lines) == 1 and len(map_.lines) == len(nmi.lines) == 2
        assert map_.lines[0].get_color() == recall.lines[0].get_color() != map_.lines[1].get_color()
        (legend,) = fig.legends
        assert [t.get_text() for t in legend.get_texts()] == ["cross-entropy", "triplet"]
    finally:
        plt.close(fig)
    fig = viz.metric_curves(partial)
    try:
        assert [ax.get_title() for ax in fig.axes] == ["mAP", "NMI"]
    finally:
        plt.close(fig)


def test_metric_curves_rejects_bad_histories():
    with pytest.raises(ValueError, match="history has none of the validation metrics .* when given a val_set"):
        viz.metric_curves({"loss": [1.0, 0.5], "val_accuracy": [0.5, 0.6]})
    with pytest.raises(ValueError, match=r"history\['val_map'\] must lie in \[0, 1\], got 0.5 to 75.0"):
        viz.metric_curves({"val_map": [0.5, 75.0]})
    with pytest.raises(ValueError, match=r"history\['b'\]\['val_nmi'\] must lie in \[0, 1\]"):
        viz.metric_curves({"a": {"val_nmi": [0.5]}, "b": {"val_nmi": [float("nan")]}})
    with pytest.raises(ValueError, match=r"at most 4 values of K, got Recall@K for K in \[1, 2, 4, 8, 16\]"):
        viz.metric_curves({f"val_recall_at_{k}": [0.5] for k in (1, 2, 4, 8, 16)})
    with pytest.raises(ValueError, match=r"history\['val_p_at_1'\] must have shape \[epochs\]"):
        viz.metric_curves({"val_p_at_1": [[0.5, 0.6]]})
    with pytest.raises(TypeError, match=r"history\['val_map'\] must be"):
        viz.metric_curves({"val_map": 0.5})


def test_correct_retrievals_bars_groups_one_bar_per_network_and_query():
    counts = {"cross-entropy": torch.tensor([50, 10, 30]), "triplet": np.array([45, 20, 0])}
    fig = viz.correct_retrievals_bars(counts, query_ids=[7, 8, 9], k=50)
    try:
        (ax,) = fig.axes
        assert len(ax.patches) == 6
        assert [p.get_height() for p in ax.containers[1]] == [45, 20, 0]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["7", "8", "9"]
        assert ax.get_ylabel() == "correct in top 50"
        assert ax.get_ylim() == (0, 50)
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cross-entropy", "triplet"]
    finally:
        plt.close(fig)


def test_correct_retrievals_bars_default_ids_and_checks():
    fig = viz.correct_retrievals_bars({"net": torch.tensor([1, 2, 3])}, k=5)
    try:
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "1", "2"]
        assert fig.axes[0].get_ylabel() == "correct in top 5"
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match=r"counts\['b'\] must have shape \[Q\] with Q=3"):
        viz.correct_retrievals_bars({"a": torch.tensor([1, 2, 3]), "b": torch.tensor([1, 2])})
    with pytest.raises(ValueError, match=r"counts\['a'\] must lie in \[0, k=5\]"):
        viz.correct_retrievals_bars({"a": torch.tensor([1, 6])}, k=5)
    with pytest.raises(ValueError, match="query_ids must have shape"):
        viz.correct_retrievals_bars({"a": torch.tensor([1, 2])}, query_ids=[1, 2, 3])


def test_show_images_one_axes_per_image_with_titles(digits):
    images, labels = digits
    fig = viz.show_images(images[:13], labels[:13], ncols=5)
    try:
        assert len(fig.axes) == 13
        assert all(len(ax.images) == 1 for ax in fig.axes)
        assert [ax.get_title() for ax in fig.axes] == [str(int(c)) for c in labels[:13]]
        assert fig.axes[5].get_subplotspec().rowspan.start == 1
    finally:
        plt.close(fig)


def test_show_images_numpy_without_labels(digits):
    images, _ = digits
    fig = viz.show_images(images[:4, 0].numpy())
    try:
        assert len(fig.axes) == 4
        assert all(ax.get_title() == "" for ax in fig.axes)
    finally:
        plt.close(fig)


def test_show_images_checks_inputs(digits):
    images, labels = digits
    with pytest.raises(ValueError, match=r"images must have shape \[N, 1, H, W\] or \[N, H, W\]"):
        viz.show_images(images[0, 0, 0])
    with pytest.raises(ValueError, match=r"labels must have shape \[N\] with N=4"):
        viz.show_images(images[:4], labels[:5])
    with pytest.raises(ValueError, match="images must not be empty along N"):
        viz.show_images(images[:0])
    with pytest.raises(TypeError, match="images must be a torch.Tensor or a numpy array"):
        viz.show_images(images[:4].tolist())
    with pytest.raises(ValueError, match="ncols must be positive"):
        viz.show_images(images[:4], ncols=0)


def test_per_class_bars_one_group_per_class_and_highlighted_classes():
    drops = {"arcface": torch.tensor([0.0, 0.1, -0.05]), "proxy_nca": np.array([0.2, 0.0, 0.3]),
             "triplet": [0.1, 0.1, 0.1]}
    fig = viz.per_class_bars(drops, class_names=["a", "b", "c"], highlight=[2], ylabel="drop", title="MNIST")
    try:
        (ax,) = fig.axes
        assert len(ax.containers) == 3 and len(ax.patches) >= 9
        assert [p.get_height() for p in ax.containers[0]] == pytest.approx([0.0, 0.1, -0.05])
        assert [p.get_height() for p in ax.containers[2]] == pytest.approx([0.1, 0.1, 0.1])
        assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c*"]  # held out: starred
        assert ax.get_ylabel() == "drop" and ax.get_title() == "MNIST"
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["arcface", "proxy_nca", "triplet"]
        shaded = [p for p in ax.patches if p not in [bar for c in ax.containers for bar in c]]
        assert len(shaded) == 1 and shaded[0].get_x() == pytest.approx(1.5)  # class 2's background
    finally:
        plt.close(fig)


def test_per_class_bars_draws_on_a_given_axes_and_checks_its_inputs():
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert viz.per_class_bars({"x": [1.0, 2.0]}, ax=right) is fig
    assert len(right.containers) == 1 and not left.containers
    assert [t.get_text() for t in right.get_xticklabels()] == ["0", "1"]
    with pytest.raises(ValueError, match=r"values\['b'\] must have shape \[C\] with C=2"):
        viz.per_class_bars({"a": [1.0, 2.0], "b": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="class_names must name the C=2 classes"):
        viz.per_class_bars({"a": [1.0, 2.0]}, class_names=["x"])
    with pytest.raises(ValueError, match="highlight must hold class ids in 0..1"):
        viz.per_class_bars({"a": [1.0, 2.0]}, highlight=[2])
    with pytest.raises(ValueError, match="non-empty dict"):
        viz.per_class_bars({})


@pytest.fixture
def explained(digits):
    """N=3 digit images [3, 1, 28, 28] and two maps [3, 28, 28]: a tensor and a numpy array."""
    images, _ = digits
    rng = np.random.default_rng(0)
    return images[:3], {"Grad-CAM": torch.rand(3, 28, 28, generator=torch.Generator().manual_seed(0)),
                        "similarity": rng.uniform(0.0, 4.0, size=(3, 28, 28))}


def test_explanation_grid_one_row_per_map_each_scaled_to_its_maximum(explained, tmp_path):
    images, maps = explained
    path = tmp_path / "explained" / "grid.png"
    fig = viz.explanation_grid(images, maps, titles=["zero", "one", "two"], path=path)
    try:
        assert_png(path)
        axes = np.array(fig.axes).reshape(3, 3)  # rows: image, Grad-CAM, similarity; one column per image
        assert [ax.get_ylabel() for ax in axes[:, 0]] == ["image", "Grad-CAM", "similarity"]
        assert all(ax.get_ylabel() == "" for ax in axes[:, 1:].ravel())
        assert [ax.get_title() for ax in axes[0]] == ["zero", "one", "two"]
        for column in range(3):
            (image,) = axes[0, column].images
            np.testing.assert_array_equal(image.get_array(), images[column, 0].numpy())
            assert image.get_cmap().name == "gray"
            for row, name in enumerate(maps, start=1):
                grey, overlay = axes[row, column].images
                np.testing.assert_array_equal(grey.get_array(), images[column, 0].numpy())
                expected = np.asarray(maps[name][column], dtype=float)
                np.testing.assert_allclose(overlay.get_array(), expected / expected.max())
                assert overlay.get_cmap().name == viz.OVERLAY_CMAP and overlay.get_alpha() == viz.OVERLAY_ALPHA
                assert overlay.get_clim() == (0.0, 1.0)
    finally:
        plt.close(fig)


def test_explanation_grid_draws_no_overlay_for_a_zero_map(explained):
    images, maps = explained
    cam = maps["Grad-CAM"].clone()
    cam[1] = 0.0  # the second image's map is all zero
    fig = viz.explanation_grid(images[:, 0].numpy(), {"Grad-CAM": cam, "nothing": torch.zeros(3, 28, 28)})
    try:
        axes = np.array(fig.axes).reshape(3, 3)
        assert [len(ax.images) for ax in axes[1]] == [2, 1, 2]
        assert [len(ax.images) for ax in axes[2]] == [1, 1, 1]
        assert all(ax.get_title() == "" for ax in axes[0])
    finally:
        plt.close(fig)


def test_explanation_grid_refuses_bad_maps_and_titles(explained):
    images, maps = explained
    with pytest.raises(ValueError, match="maps must be a non-empty dict name -> "):
        viz.explanation_grid(images, {})
    message = (r"maps\['similarity'\] must have shape \[N, H, W\] with N=3 \(as in images\), H=28 \(as in "
               r"images\), W=28 \(as in images\), got \[3, 20, 20\]")
    with pytest.raises(ValueError, match=message):
        viz.explanation_grid(images, {"Grad-CAM": maps["Grad-CAM"], "similarity": np.ones((3, 20, 20))})
    with pytest.raises(ValueError, match=r"maps\['Grad-CAM'\] must have shape \[N, H, W\] with N=3"):
        viz.explanation_grid(images, {"Grad-CAM": maps["Grad-CAM"][:2]})
    negative = maps["Grad-CAM"] - 0.5
    with pytest.raises(ValueError, match=r"maps\['Grad-CAM'\] must be non-negative, got values down to -0\.5"):
        viz.explanation_grid(images, {"Grad-CAM": negative})
    broken = maps["similarity"].copy()
    broken[0, 0, :2] = [np.nan, np.inf]
    with pytest.raises(ValueError, match=r"maps\['similarity'\] must be finite, got 2 NaN or infinite values"):
        viz.explanation_grid(images, {"similarity": broken})
    with pytest.raises(TypeError, match=r"maps\['words'\] must hold numbers, got dtype <U1"):
        viz.explanation_grid(images, {"words": np.full((3, 28, 28), "a")})
    with pytest.raises(ValueError, match=r"titles must have shape \[N\] with N=3 \(as in images\), got \[2\]"):
        viz.explanation_grid(images, maps, titles=["zero", "one"])
    with pytest.raises(ValueError, match=r"images must have shape \[N, 1, H, W\] or \[N, H, W\]"):
        viz.explanation_grid(images[0, 0], maps)


def cell_texts(ax):
    """The text written in each cell of a confusion matrix axes: {(row, column): Text}."""
    return {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}


def test_confusion_matrix_writes_each_count_in_its_cell(tmp_path):
    confusion = np.array([[5, 1, 0], [0, 7, 2]])  # true classes 1, 2 by predicted 0, 1, 2
    path = tmp_path / "confusion.png"
    fig = viz.confusion_matrix(confusion, [1, 2], torch.tensor([0, 1, 2]), title="unseen", path=path)
    try:
        assert_png(path)
        (ax,) = fig.axes  # no colour bar: the counts are written
        (image,) = ax.images
        np.testing.assert_array_equal(image.get_array(), confusion)
        texts = cell_texts(ax)
        assert {cell: int(text.get_text()) for cell, text in texts.items()} == {
            (i, j): int(confusion[i, j]) for i in range(2) for j in range(3)}
        assert to_rgba(texts[1, 1].get_color()) == to_rgba("white")  # 7, the darkest cell
        assert to_rgba(texts[0, 1].get_color()) == to_rgba("black")  # 1, a light one
        assert to_rgba(texts[0, 2].get_color()) == to_rgba(viz.ZERO_COLOR)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "2"]
        assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true" and ax.get_title() == "unseen"
    finally:
        plt.close(fig)


def test_confusion_matrix_of_a_class_report_names_and_marks_the_highlighted_classes():
    from labtools.errors import class_report

    labels = [0, 0, 1, 1, 2, 2, 2]
    predicted = [0, 1, 1, 1, 2, 0, 2]
    report = class_report(labels, predicted, {"seen": (0, 1), "unseen": (2,)})["unseen"]
    names = {0: "zero", 1: "one", 2: "two"}
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert viz.confusion_matrix(report["confusion"], report["classes"], report["columns"], class_names=names,
                                highlight=[2], ax=right) is fig
    assert not left.images and not left.texts
    assert [t.get_text() for t in right.get_xticklabels()] == ["zero", "one", "two*"]
    assert [t.get_text() for t in right.get_yticklabels()] == ["two*"]
    assert [t.get_fontweight() for t in right.get_xticklabels()] == ["normal", "normal", "bold"]
    assert [t.get_fontweight() for t in right.get_yticklabels()] == ["bold"]
    assert {cell: t.get_text() for cell, t in cell_texts(right).items()} == {(0, 0): "1", (0, 1): "0", (0, 2): "2"}
    fig = viz.confusion_matrix(np.eye(2, dtype=int), [0, 1], [0, 1], class_names=["zero", "one"])
    try:
        assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["zero", "one"]
    finally:
        plt.close(fig)


def test_confusion_matrix_refuses_bad_inputs():
    confusion = np.array([[5, 1, 0], [0, 7, 2]])
    with pytest.raises(TypeError, match="confusion must hold integer counts, got dtype float64"):
        viz.confusion_matrix(confusion / 2, [1, 2], [0, 1, 2])
    with pytest.raises(ValueError, match="confusion must hold counts >= 0, got -1"):
        viz.confusion_matrix(confusion - 1, [1, 2], [0, 1, 2])
    with pytest.raises(ValueError, match=r"rows must have shape \[R\] with R=2 \(as in confusion\), got \[3\]"):
        viz.confusion_matrix(confusion, [0, 1, 2], [0, 1, 2])
    with pytest.raises(ValueError, match=r"columns must have shape \[C\] with C=3 \(as in confusion\), got \[2\]"):
        viz.confusion_matrix(confusion, [1, 2], [0, 1])
    with pytest.raises(ValueError, match=r"confusion must have shape \[R, C\], got \[3\]"):
        viz.confusion_matrix(confusion[0], [1, 2], [0, 1, 2])
    with pytest.raises(ValueError, match="columns must name each class once, got 1 more than once"):
        viz.confusion_matrix(confusion, [1, 2], [0, 1, 1])
    with pytest.raises(TypeError, match="rows must hold integer class ids, got dtype float"):
        viz.confusion_matrix(confusion, [1.0, 2.0], [0, 1, 2])
    with pytest.raises(ValueError, match=r"highlight must hold classes of rows or columns \(0, 1, 2\), got 2, 9"):
        viz.confusion_matrix(confusion, [1, 2], [0, 1, 2], highlight=(2, 9))
    with pytest.raises(ValueError, match="class_names has no entry for class 2"):
        viz.confusion_matrix(confusion, [1, 2], [0, 1, 2], class_names=["zero", "one"])
    with pytest.raises(ValueError, match="class_names has no entry for class 0"):
        viz.confusion_matrix(confusion, [1, 2], [0, 1, 2], class_names={1: "one", 2: "two"})
