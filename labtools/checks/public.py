"""The public checks: properties and hand-computed examples, no reference solution.

Students run them from the notebook (``run_public_checks``) and from the command line
(``python -m labtools.checks notebook.ipynb``); the grader runs them too, beside its hidden checks.
"""

from __future__ import annotations

import functools
import math

import torch

from labtools.checks.registry import Call, Check, register
from labtools.checks.submission import loop_violations

__all__ = ["unit_rows", "describe_tensor", "expect_tensor", "vectorized_check", "synthetic_images"]


# ----------------------------------------------------------------------------------------------
# helpers shared with the hidden checks


def unit_rows(n: int, d: int, seed: int) -> torch.Tensor:
    """``n`` random L2-normalized float32 rows of length ``d``, seeded."""
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)


def synthetic_images(n_per_class: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded toy images ``[n, 1, 28, 28]``: a class-specific blob plus noise, and their labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    labels = labels[torch.randperm(len(labels), generator=g)]
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    centers = torch.rand(classes, 2, generator=g) * 16 + 6
    blobs = torch.exp(-((yy - centers[:, 0, None, None]) ** 2 + (xx - centers[:, 1, None, None]) ** 2) / 18.0)
    images = blobs[labels] + 0.15 * torch.rand(len(labels), 28, 28, generator=g)
    return images.clamp(0, 1).unsqueeze(1), labels


def describe_tensor(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}" if not hasattr(value, "type_name") else f"a {value.type_name}"


def expect_tensor(value, name: str, shape: list[int] | None = None, floating: bool = True) -> str | None:
    """A message saying what is wrong with ``value`` as the tensor ``name``, or ``None``."""
    if not isinstance(value, torch.Tensor):
        return f"{name} should be a torch tensor, got {describe_tensor(value)}"
    if shape is not None and list(value.shape) != list(shape):
        return f"{name} should have shape {list(shape)}, got {list(value.shape)}"
    if floating and not value.is_floating_point():
        return f"{name} should be a floating-point tensor, got dtype {value.dtype}"
    if floating and not torch.isfinite(value).all():
        return f"{name} contains NaN or infinite values"
    return None


def _failed(outcomes) -> str | None:
    for outcome in outcomes:
        if not outcome.ok:
            return f"the call failed: {outcome.error}"
    return None


def parsed(outcomes, parse, *args):
    """``parse(value of the first call, *args)``: ``(result, None)``, or ``(None, message)`` when a
    call failed or ``parse`` found the value malformed (the common start of the judges)."""
    failure = _failed(outcomes)
    return (None, failure) if failure else parse(outcomes[0].value, *args)


def _close(value: torch.Tensor, expected, atol: float) -> bool:
    expected = torch.as_tensor(expected, dtype=torch.float64)
    return bool(torch.allclose(value.to(torch.float64), expected, atol=atol, rtol=0))


def _simple(id, lab, function, points, description, calls, judge, hidden=False, kind="code"):
    """Register a check whose calls are fixed (``calls`` a function returning them)."""
    return register(Check(id=id, lab_id=lab, function=function, points=points, description=description,
                          prepare=lambda: (calls(), None), judge=lambda outcomes, state, ctx: judge(outcomes, ctx),
                          hidden=hidden, kind=kind))


def vectorized_check(lab: str, function: str, points: float, make_call, allowed_for: int = 0, slack: int = 6):
    """Static and dynamic loop checks: no Python loop in the code, and the same number of executed
    lines and torch calls at input size N and 2N (``make_call(scale)`` builds the call)."""

    def judge(outcomes, state, ctx):
        if ctx.source is not None:
            problems = loop_violations(ctx.source, function, allowed_for=allowed_for)
            if problems:
                return False, "use tensor operations instead of Python loops: " + "; ".join(problems[:4])
        failure = _failed(outcomes)
        if failure:
            return False, failure
        small, large = outcomes[0].counts, outcomes[1].counts
        if not small or not large:
            return False, "the call could not be measured"
        grew = [f"{kind} {small[kind]} -> {large[kind]}" for kind in ("lines", "ops")
                if large.get(kind, 0) > small.get(kind, 0) + slack]
        if grew:
            return False, ("the work done in Python grows with the input size (N -> 2N: " + ", ".join(grew)
                           + "): use tensor operations instead of loops")
        note = "" if ctx.source is not None else " (dynamic check only: the source was not available)"
        return True, f"no Python loop over the items; executed lines and torch calls constant in N{note}"

    allowed = " (one loop over anchors allowed)" if allowed_for else ""
    return register(Check(id=f"{function}.vectorized", lab_id=lab, function=function, points=points,
                          description=f"{function} uses tensor operations, not Python loops{allowed}",
                          prepare=lambda: ([make_call(1), make_call(2)], None), judge=judge))


# ----------------------------------------------------------------------------------------------
# Lab 1: distances

for _lab in ("lab1_retrieval",):
    E = torch.eye(4)

    def _dist_shape(outcomes, ctx):
        failure = _failed(outcomes)
        if failure:
            return False, failure
        problem = expect_tensor(outcomes[0].value, "distances(query [3, 8], items [5, 8])", [3, 5])
        return (False, problem) if problem else (True, "returns a float tensor of shape [Q, N]")

    _simple("distances.shape_dtype", _lab, "distances", 0.2, "output is a float tensor of shape [Q, N]",
            lambda: [Call("distances", [unit_rows(3, 8, 1), unit_rows(5, 8, 2)])], _dist_shape)

    def _dist_values(outcomes, ctx):
        failure = _failed(outcomes)
        if failure:
            return False, failure
        value = outcomes[0].value
        problem = expect_tensor(value, "distances(query, items)", [2, 4])
        if problem:
            return False, problem
        expected = [[0.0, 4.0, 2.0, 2.0], [2.0, 2.0, 0.0, 4.0]]
        if not _close(value, expected, 1e-5):
            return False, (f"query [e1, e2] against items [e1, -e1, e2, -e2] should give {expected} (squared "
                           f"distances: identical 0, opposite 4, orthogonal 2; tolerance 1e-5), got "
                           f"{[[round(float(x), 4) for x in row] for row in value]}")
        return True, "identical unit vectors are at distance 0, opposite ones at 4, orthogonal ones at 2"

    _simple("distances.identical_opposite", _lab, "distances", 0.2,
            "squared distance 0 for identical, 4 for opposite and 2 for orthogonal unit vectors",
            lambda: [Call("distances", [torch.stack([E[0], E[1]]), torch.stack([E[0], -E[0], E[1], -E[1]])])],
            _dist_values)

    def _dist_symmetric(outcomes, ctx):
        failure = _failed(outcomes)
        if failure:
            return False, failure
        value = outcomes[0].value
        problem = expect_tensor(value, "distances(x [6, 8], x)", [6, 6])
        if problem:
            return False, problem
        if not _close(value, value.T, 1e-5):
            return False, "distances(x, x) should be symmetric (tolerance 1e-5)"
        if not _close(torch.diagonal(value), torch.zeros(6), 1e-5):
            return False, "distances(x, x) should have a zero diagonal (tolerance 1e-5)"
        return True, "distances(x, x) is symmetric with a zero diagonal"

    _simple("distances.symmetric", _lab, "distances", 0.1, "distances(x, x) is symmetric with zero diagonal",
            lambda: [Call("distances", [unit_rows(6, 8, 3), unit_rows(6, 8, 3)])], _dist_symmetric)

    vectorized_check(_lab, "distances", 0.2,
                     lambda s: Call("distances", [unit_rows(4 * s, 8, 4), unit_rows(16 * s, 8, 5)], instrument=True))


# ----------------------------------------------------------------------------------------------
# Lab 1: evaluate_AP


def _ap_result(value, n: int, name: str):
    """``(ap, precision, recall)`` as tensors, or a message."""
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        return None, f"{name} should return (ap, precision, recall), got {describe_tensor(value)}"
    ap, precision, recall = value
    if isinstance(ap, (int, float)) and not isinstance(ap, bool):
        ap = torch.tensor(float(ap))
    if not isinstance(ap, torch.Tensor) or ap.numel() != 1:
        return None, f"ap should be a number or a 0-d tensor, got {describe_tensor(ap)}"
    for part, label in ((precision, "precision"), (recall, "recall")):
        problem = expect_tensor(part, label, [n])
        if problem:
            return None, problem
    if not torch.isfinite(ap).all():
        return None, "ap is NaN or infinite"
    return (ap.reshape(()), precision, recall), None


for _lab in ("lab1_retrieval",):

    def _ap_perfect(outcomes, ctx):
        parts, problem = parsed(outcomes, _ap_result, 5, "evaluate_AP")
        if problem:
            return False, problem
        ap, precision, recall = parts
        if abs(float(ap) - 1.0) > 1e-6:
            return False, f"a perfect ranking (both relevant items first) should have AP 1, got {float(ap):.4f}"
        if not _close(recall, [0.5, 1, 1, 1, 1], 1e-6) or not _close(precision, [1, 1, 2 / 3, 0.5, 0.4], 1e-6):
            return False, ("a perfect ranking with 2 relevant items among 5 should give precision "
                           "[1, 1, 2/3, 1/2, 2/5] and recall [1/2, 1, 1, 1, 1] (tolerance 1e-6)")
        return True, "a perfect ranking has AP 1 and the expected precision and recall"

    _simple("evaluate_AP.perfect_ranking", _lab, "evaluate_AP", 0.2, "AP of a perfect ranking is 1",
            lambda: [Call("evaluate_AP", [torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]), torch.tensor([1, 1, 0, 0, 0]), 1])],
            _ap_perfect)

    def _ap_hand(outcomes, ctx):
        parts, problem = parsed(outcomes, _ap_result, 5, "evaluate_AP")
        if problem:
            return False, problem
        ap, precision, recall = parts
        if abs(float(ap) - 43 / 90) > 1e-5:
            return False, (f"dist [0.5, 0.1, 0.4, 0.2, 0.3], labels [1, 0, 1, 0, 1], query label 1: the ranking is "
                           f"[0, 0, 1, 1, 1] by relevance, AP = (1/3 + 2/4 + 3/5) / 3 = 0.4778; got {float(ap):.4f} "
                           "(tolerance 1e-5)")
        if not _close(precision, [0, 0, 1 / 3, 0.5, 0.6], 1e-5) or not _close(recall, [0, 0, 1 / 3, 2 / 3, 1], 1e-5):
            return False, ("the hand-worked example should give precision [0, 0, 1/3, 1/2, 3/5] and recall "
                           "[0, 0, 1/3, 2/3, 1] (tolerance 1e-5)")
        return True, "the hand-worked 5-item example gives AP 43/90 = 0.4778"

    _simple("evaluate_AP.hand_example", _lab, "evaluate_AP", 0.2, "AP of a hand-worked 5-item example",
            lambda: [Call("evaluate_AP", [torch.tensor([0.5, 0.1, 0.4, 0.2, 0.3]), torch.tensor([1, 0, 1, 0, 1]),
                                          torch.tensor(1)])], _ap_hand)

    def _ap_range(outcomes, ctx):
        parts, problem = parsed(outcomes, _ap_result, 20, "evaluate_AP")
        if problem:
            return False, problem
        ap, precision, recall = parts
        if not 0.0 <= float(ap) <= 1.0:
            return False, f"AP must lie in [0, 1], got {float(ap):.4f}"
        if abs(float(recall[-1]) - 1.0) > 1e-6:
            return False, f"recall at the end of the full ranking must be 1, got {float(recall[-1]):.4f}"
        if (precision < -1e-9).any() or (precision > 1 + 1e-9).any():
            return False, "precision values must lie in [0, 1]"
        return True, "AP in [0, 1], precision and recall of length N, recall ends at 1"

    def _ap_range_call():
        g = torch.Generator().manual_seed(6)
        return [Call("evaluate_AP", [torch.rand(20, generator=g), torch.randint(0, 3, (20,), generator=g), 2])]

    _simple("evaluate_AP.range", _lab, "evaluate_AP", 0.1, "AP lies in [0, 1] and recall ends at 1",
            _ap_range_call, _ap_range)

    def _ap_vec_call(s):
        g = torch.Generator().manual_seed(7)
        n = 16 * s
        return Call("evaluate_AP", [torch.rand(n, generator=g), torch.randint(0, 3, (n,), generator=g), 1],
                    instrument=True)

    vectorized_check(_lab, "evaluate_AP", 0.2, _ap_vec_call)


# ----------------------------------------------------------------------------------------------
# Lab 1: evaluate_mAP


def _map_result(value, n: int):
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        return None, f"evaluate_mAP should return (mAP, precision, recall), got {describe_tensor(value)}"
    m, precision, recall = value
    if isinstance(m, torch.Tensor) and m.numel() == 1:
        m = float(m)
    if not isinstance(m, (int, float)) or isinstance(m, bool):
        return None, f"mAP should be a float, got {describe_tensor(m)}"
    if not math.isfinite(m):
        return None, "mAP is NaN or infinite"
    for part, label in ((precision, "precision"), (recall, "recall")):
        problem = expect_tensor(part, label, [n - 1])
        if problem:
            return None, problem + f" (each query is ranked against the N - 1 = {n - 1} other images)"
    return (float(m), precision, recall), None


def tiny_map_call(n_per_class=10, classes=3, queries=5, seed=8, key=None):
    images, labels = synthetic_images(n_per_class, classes, seed)
    return Call("evaluate_mAP", [{"__spec__": "convnet", "seed": seed},
                                 {"__spec__": "dataset", "images": images, "labels": labels}],
                {"num_queries": queries}, key=key)


for _lab in ("lab1_retrieval",):

    def _map_shapes(outcomes, ctx):
        parts, problem = parsed(outcomes, _map_result, 30)
        if problem:
            return False, problem
        m, precision, recall = parts
        if not 0.0 <= m <= 1.0:
            return False, f"mAP must lie in [0, 1], got {m:.4f}"
        if abs(float(recall[-1]) - 1.0) > 1e-6:
            return False, f"the mean recall must end at 1, got {float(recall[-1]):.4f}"
        return True, "returns (float, [N-1], [N-1]) with the recall ending at 1"

    _simple("evaluate_mAP.shapes", _lab, "evaluate_mAP", 0.2,
            "evaluate_mAP of a tiny net returns (float, [N-1], [N-1]), recall ending at 1",
            lambda: [tiny_map_call()], _map_shapes)


# ----------------------------------------------------------------------------------------------
# Lab 2: triplet_loss


def _loss_value(value, name):
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.ndim == 0:
        if not value.is_floating_point():
            return None, f"{name} should be a floating-point tensor, got dtype {value.dtype}"
        if not torch.isfinite(value):
            return None, f"{name} is NaN or infinite"
        return float(value), None
    return None, f"{name} should return a 0-d tensor (so that it can be back-propagated), got {describe_tensor(value)}"


def expect_loss(function: str, expected: float, what: str, hints=()):
    """Judge of one call of the loss ``function`` whose value should be ``expected`` (within 1e-4).

    ``hints`` are ``(value, advice)`` pairs of known mistakes: a loss within 1e-3 of ``value``
    adds ``advice`` to the message.
    """
    def judge(outcomes, ctx):
        loss, problem = parsed(outcomes, _loss_value, function)
        if problem:
            return False, problem
        if abs(loss - expected) > 1e-4:
            advice = next((f" ({text})" for value, text in hints if abs(loss - value) < 1e-3), "")
            return False, f"{what}: expected {expected:.4g}, got {loss:.4f} (tolerance 1e-4){advice}"
        return True, f"{what}: {expected:.4g}"
    return judge


for _lab in ("lab2_triplet",):
    E = torch.eye(3)
    _expect_loss = functools.partial(expect_loss, "triplet_loss")

    _simple("triplet_loss.zero_when_separated", _lab, "triplet_loss", 0.2,
            "loss is 0 when all positives are much closer than all negatives",
            lambda: [Call("triplet_loss", [torch.stack([E[0], E[0], -E[0], -E[0]]), torch.tensor([0, 0, 1, 1])],
                          {"alpha": 0.5, "num_anchors": 4})],
            _expect_loss(0.0, "positives at distance 0 and negatives at 4 with alpha 0.5 give loss"))

    _simple("triplet_loss.hand_example", _lab, "triplet_loss", 0.3,
            "hand-worked example: e1, e2 (label 0) and e1 (label 1), alpha 0.5, 3 anchors",
            lambda: [Call("triplet_loss", [torch.stack([E[0], E[1], E[0]]), torch.tensor([0, 0, 1])],
                          {"alpha": 0.5, "num_anchors": 3})],
            _expect_loss(3.0, "features [e1, e2, e1], labels [0, 0, 1], alpha 0.5, 3 anchors: 2.5 + 0.5 + 0 ="))

    _simple("triplet_loss.hinge_sign", _lab, "triplet_loss", 0.2,
            "a positive far away and a negative close by give max(d(a,p) - d(a,n) + alpha, 0) > 0",
            lambda: [Call("triplet_loss", [torch.stack([E[0], -E[0], E[0]]), torch.tensor([0, 0, 1])],
                          {"alpha": 0.5, "num_anchors": 1})],
            _expect_loss(4.5, "anchor e1, positive -e1 (d = 4), negative e1 (d = 0), alpha 0.5: loss 4 - 0 + 0.5 ="))

    def _tl_vec_call(s):
        n = 16 * s
        labels = torch.arange(n) % 4
        return Call("triplet_loss", [unit_rows(n, 8, 9), labels], {"alpha": 0.5, "num_anchors": 4}, instrument=True)

    vectorized_check(_lab, "triplet_loss", 0.3, _tl_vec_call, allowed_for=1)


# ----------------------------------------------------------------------------------------------
# Lab 2: train_triplets and the checkpoint


def train_call(seed=0, epochs=3, key="train.tiny"):
    images, labels = synthetic_images(10, 4, seed + 11)
    return Call("train_triplets", [{"__spec__": "convnet", "seed": seed},
                                   {"__spec__": "dataset", "images": images, "labels": labels}],
                {"epochs": epochs, "lr": 0.01, "batch_size": 20, "alpha": 0.5,
                 "checkpoint": {"__spec__": "scratch_path", "name": "check_triplet.pt"}, "device": "cpu", "seed": seed},
                key=key)


def history_losses(value):
    """The per-epoch losses of a returned history, or a message."""
    if not isinstance(value, dict) or "loss" not in value:
        return None, f"train_triplets should return a history dict with a 'loss' list, got {describe_tensor(value)}"
    losses = value["loss"]
    if isinstance(losses, torch.Tensor):
        losses = losses.flatten().tolist()
    if not isinstance(losses, (list, tuple)) or not all(isinstance(x, (int, float)) for x in losses):
        return None, "history['loss'] should be a list of floats, one per epoch"
    return [float(x) for x in losses], None


#: Further refusals of a submitted checkpoint, ``gate(path, record) -> message or None``, asked after
#: it is read and before anything else: the grader adds its own (a copy of one of the course's
#: networks, :mod:`autograder.grading.hidden`); a student's kit has none.
CHECKPOINT_GATES: list = []
#: A ConvNet checkpoint is about 130 kB (260 kB with its optimizer state): a far larger file is refused unread.
MAX_CHECKPOINT_BYTES = 32 << 20
#: The most classes a submitted ConvNet's (unused) classification layer may have.
MAX_CHECKPOINT_CLASSES = 1000


def submitted_checkpoint(path, name: str = "triplet_net.pt"):
    """``(net, record, None)`` when ``path`` holds the lab's ConvNet, saved by
    ``labtools.models.save_checkpoint`` with a training history of one finite loss per epoch it
    records; else ``(None, record or None, message)``, the message in the student's terms (the
    file's ``name``, never the path it was read from, nor the text of a loading error).

    Every check of a submitted checkpoint starts here: the public ``checkpoint.loads`` and the
    grader's mAP steps, which are refused for a network of another architecture (Lab 4's
    EmbeddingNet ranks well too) or a history that contradicts its epochs."""
    import os

    from labtools.models import ConvNet, load_checkpoint, read_checkpoint

    how = "save the network your train_triplets trained with labtools.models.save_checkpoint, as the lab asks"
    after_each = ("save it with save_checkpoint(checkpoint, net, ..., epochs=epoch, history=history) after each "
                  "epoch, as train_triplets does")
    if path is None or not os.path.isfile(path):
        return None, None, f"no {name} was submitted beside the notebook (train_triplets saves it there)"
    size = os.path.getsize(path)
    if size > MAX_CHECKPOINT_BYTES:
        return None, None, f"{name} is {size / 2 ** 20:.0f} MB, far larger than a checkpoint of the lab's ConvNet: {how}"
    try:
        record = read_checkpoint(path, max_bytes=MAX_CHECKPOINT_BYTES)
    except Exception:  # the loader's own text names the grader's path and gives PyTorch's advice
        return None, None, f"{name} is not a checkpoint that labtools.models.load_checkpoint can read: {how}"
    for gate in CHECKPOINT_GATES:
        problem = gate(path, record)
        if problem:
            return None, record, problem
    stored = record.get("architecture")
    if stored != "ConvNet":
        held = ("only a state dict, without the architecture, epochs and history save_checkpoint records"
                if stored is None else f"a network of architecture {str(stored)[:40]!r}")
        return None, record, f"{name} holds {held}, not the lab's ConvNet: {how}"
    state = record.get("state_dict")
    head = state.get("10.weight") if isinstance(state, dict) else None
    classes = head.shape[0] if isinstance(head, torch.Tensor) and head.ndim == 2 else None
    config = record.get("config")
    if (classes is None or not 1 <= classes <= MAX_CHECKPOINT_CLASSES or not isinstance(config, dict)
            or config.get("num_classes") != classes):
        return None, record, f"{name} does not hold the parameters of the lab's ConvNet: {how}"
    try:
        net, _ = load_checkpoint(path, ConvNet(num_classes=classes))
        with torch.no_grad():
            features = net.features(torch.zeros(2, 1, 28, 28))
    except Exception as error:  # CheckpointError says what differs, naming the path
        reason = str(error).replace(str(path), name) if type(error).__name__ == "CheckpointError" else ""
        return None, record, (reason[:300] or f"{name} does not load as the lab's ConvNet") + f": {how}"
    if type(net) is not ConvNet or tuple(features.shape) != (2, 256):
        return None, record, f"{name} should hold the lab's ConvNet (256-d features): {how}"
    epochs, history = record.get("epochs"), record.get("history")
    losses = history.get("loss") if isinstance(history, dict) else None
    if isinstance(losses, torch.Tensor):
        losses = losses.flatten().tolist()
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        return None, record, f"{name} does not record how many epochs it was trained: {after_each}"
    if not isinstance(losses, (list, tuple)) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in losses):
        return None, record, f"{name} holds no training history (history['loss'], one loss per epoch): {after_each}"
    if len(losses) != epochs:
        return None, record, (f"{name} records {epochs} epochs of training but its history holds {len(losses)} "
                              "per-epoch losses: save the history of every epoch trained (when train_triplets "
                              "resumes from a checkpoint, it continues that checkpoint's history)")
    if not all(math.isfinite(x) for x in losses):
        return None, record, f"{name}'s history holds NaN or infinite losses: did its training diverge?"
    return net, record, None


for _lab in ("lab2_triplet",):

    def _train_decreases(outcomes, ctx):
        failure = _failed(outcomes)
        if failure:
            return False, failure
        losses, problem = history_losses(outcomes[0].value)
        if problem:
            return False, problem
        if len(losses) != 3:
            return False, f"3 epochs should give 3 losses in history['loss'], got {len(losses)}"
        if not all(math.isfinite(x) for x in losses) or not losses[-1] < losses[0]:
            return False, f"the loss should decrease over a tiny seeded run, got {[round(x, 4) for x in losses]}"
        return True, f"the loss decreases on a tiny seeded run ({losses[0]:.3f} -> {losses[-1]:.3f})"

    _simple("train_triplets.loss_decreases", _lab, "train_triplets", 0.3,
            "the history's loss decreases on a tiny seeded run (3 epochs, 40 toy images)",
            lambda: [train_call()], _train_decreases)

    def _train_checkpoint(outcomes, ctx):
        failure = _failed(outcomes)
        if failure:
            return False, failure
        from labtools.models import load_checkpoint

        path = outcomes[0].scratch / "check_triplet.pt"
        try:
            load_checkpoint(path)
        except Exception as error:
            return False, f"train_triplets should save a checkpoint loadable by load_checkpoint: {error}"
        return True, "writes a checkpoint that load_checkpoint reads"

    _simple("train_triplets.writes_checkpoint", _lab, "train_triplets", 0.2,
            "train_triplets writes a checkpoint that labtools.models.load_checkpoint loads",
            lambda: [train_call()], _train_checkpoint)

    def _checkpoint_loads(outcomes, ctx):
        path = ctx.obj if ctx.obj is not None else (ctx.files / "triplet_net.pt" if ctx.files else None)
        _, _, problem = submitted_checkpoint(path)
        if problem:
            return False, problem
        return True, "triplet_net.pt loads as the lab's ConvNet, with one finite loss per epoch of training it records"

    _simple("checkpoint.loads", _lab, "checkpoint", 0.5,
            "the submitted triplet_net.pt loads as the lab's ConvNet and its history holds one loss per epoch it "
            "records (saved by labtools.models.save_checkpoint)",
            lambda: [], _checkpoint_loads, kind="file")


# ----------------------------------------------------------------------------------------------
# Lab 3: smooth_ap_loss


def _points_on_circle(*degrees: float) -> torch.Tensor:
    """Unit vectors ``[len(degrees), 2]`` at the given angles."""
    radians = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([radians.cos(), radians.sin()], dim=1)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def smooth_ap_batch(classes: int, per_class: int, d: int = 8, seed: int = 3, instrument: bool = False) -> Call:
    """A call of ``smooth_ap_loss`` on ``classes x per_class`` random unit rows (tau 0.1)."""
    labels = torch.arange(classes).repeat_interleave(per_class)
    return Call("smooth_ap_loss", [unit_rows(len(labels), d, seed), labels], {"tau": 0.1}, instrument=instrument)


#: The memory check of smooth_ap_loss: batches of m = MEMORY_PER_CLASS images per class; at the
#: larger the call and its backward pass must stay within MEMORY_BOUND_UNITS [B, m, B] float32
#: tensors (12.6 MB at B = 256: the reference peaks at 3.6 MB, in float64 at 7.0 MB; a [B, B, B]
#: tensor is 16.8 MB in bool, 67 MB in float32), and grow less than MEMORY_GROWTH_LIMIT from the
#: smaller (B^2 m: 4x; B^3: 8x).
MEMORY_BATCHES, MEMORY_PER_CLASS, MEMORY_BOUND_UNITS, MEMORY_GROWTH_LIMIT = (128, 256), 4, 12, 2 ** 2.5


def smooth_ap_memory_call(batch: int) -> Call:
    """``smooth_ap_loss`` on ``batch`` random unit rows that require a gradient, measured with its backward."""
    labels = torch.arange(batch // MEMORY_PER_CLASS).repeat_interleave(MEMORY_PER_CLASS)
    return Call("smooth_ap_loss", [{"__spec__": "leaf", "tensor": unit_rows(batch, 8, 3)}, labels], {"tau": 0.1},
                memory=True, backward=True)


def memory_used(counts: dict) -> tuple[int, str] | None:
    """``(bytes, how)`` of a measured call: the peak of its allocations (torch's and Python's), or
    the span of the largest tensor an operation worked on when larger (``how``: ``"allocated"`` or
    ``"operand"``); ``None`` when the counts lack the measurement."""
    if not all(isinstance(counts.get(k), (int, float)) for k in ("peak_bytes", "largest_operand_bytes")):
        return None
    allocated = int(counts["peak_bytes"]) + int(counts.get("python_peak_bytes", 0))
    operand = int(counts["largest_operand_bytes"])
    return (allocated, "allocated") if allocated >= operand else (operand, "operand")


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


for _lab in ("lab3_smoothap",):

    _expect_ap_loss = functools.partial(expect_loss, "smooth_ap_loss")

    # Three points at 0, 120 and 60 degrees, labels [0, 0, 1]: the queries 0 and 1 each have one
    # positive (the other, similarity -0.5) and one negative (item 2, similarity 0.5 to both), so
    # D = 0.5 - (-0.5) = 1 and AP = 1 / (1 + G(1)) = 1 / (1 + sigmoid(1 / tau)); item 2 has no positive.
    _TRIO = (_points_on_circle(0, 120, 60), torch.tensor([0, 0, 1]))

    def _trio_loss(tau):
        return 1 - 1 / (1 + _sigmoid(1 / tau))

    _simple("smooth_ap_loss.hand_example", _lab, "smooth_ap_loss", 0.3,
            "hand-worked example: points at 0, 120, 60 degrees, labels [0, 0, 1], tau 0.1",
            lambda: [Call("smooth_ap_loss", list(_TRIO), {"tau": 0.1})],
            _expect_ap_loss(_trio_loss(0.1), "points at 0, 120, 60 degrees, labels [0, 0, 1], tau 0.1: "
                            "1 - 1 / (1 + sigmoid(1 / 0.1))",
                            hints=[(_trio_loss(1.0), "tau seems ignored: divide D by tau inside the sigmoid"),
                                   (1 - 1 / (1 + _sigmoid(-10)), "check the sign of D_ij = s_j - s_i")]))

    _simple("smooth_ap_loss.tau", _lab, "smooth_ap_loss", 0.2,
            "the temperature tau is used: the same example with tau 0.5 and 1",
            lambda: [Call("smooth_ap_loss", list(_TRIO), {"tau": 0.5}), Call("smooth_ap_loss", list(_TRIO), {"tau": 1.0})],
            lambda outcomes, ctx: _all_judged(outcomes, ctx, [
                _expect_ap_loss(_trio_loss(0.5), "tau 0.5: 1 - 1 / (1 + sigmoid(2))"),
                _expect_ap_loss(_trio_loss(1.0), "tau 1: 1 - 1 / (1 + sigmoid(1))")]))

    # e1 and e2 (label 0) and their bisector (label 1): for query e1 the negative (similarity 0.71)
    # ranks above the positive e2 (similarity 0): loss 1 - 1 / (1 + sigmoid(0.71 / 0.1)) = 0.4998.
    # Counting each query as its own positive (similarity 1, first) gives 0.1579 instead (the
    # bisector then has a positive too: itself, with the two others close behind).
    _PAIR = (torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5 ** 0.5, 0.5 ** 0.5]], dtype=torch.float64),
             torch.tensor([0, 0, 1]))
    _simple("smooth_ap_loss.query_excluded", _lab, "smooth_ap_loss", 0.3,
            "the query is not ranked among the items (it is not its own positive)",
            lambda: [Call("smooth_ap_loss", list(_PAIR), {"tau": 0.1})],
            _expect_ap_loss(1 - 1 / (1 + _sigmoid(0.5 ** 0.5 / 0.1)),
                            "e1, e2 (label 0) and (e1 + e2) / sqrt(2) (label 1), tau 0.1: 1 - 1 / (1 + sigmoid(7.07))",
                            hints=[(0.1579, "the query seems to count as its own positive: exclude j = q")]))

    _simple("smooth_ap_loss.perfect_ranking", _lab, "smooth_ap_loss", 0.3,
            "a perfect ranking (each class one point, classes orthogonal) gives loss 0",
            lambda: [Call("smooth_ap_loss", [torch.eye(3)[torch.tensor([0, 0, 1, 1, 2, 2])], torch.tensor([0, 0, 1, 1, 2, 2])],
                          {"tau": 0.01})],
            _expect_ap_loss(0.0, "3 classes of 2 identical points on orthogonal axes, tau 0.01: loss",
                            hints=[(0.8, "check the sign of D_ij = s_j - s_i: G(D_ij) is about 1 when j ranks above i")]))

    def _range_and_no_positive(outcomes, ctx):
        loss, problem = parsed(outcomes, _loss_value, "smooth_ap_loss")
        if problem:
            return False, problem + " (a random batch of 4 classes x 4)"
        if not 0 <= loss <= 1:
            return False, f"1 - AP lies in [0, 1], got {loss:.4f} on a random batch of 4 classes x 4"
        alone, problem = _loss_value(outcomes[1].value, "smooth_ap_loss")
        if problem:
            return False, problem + " when no query has a positive (average only over queries that have one)"
        if alone != 0:
            return False, f"when no query has a positive the loss should be 0, got {alone:.4f}"
        return True, "a 0-d loss in [0, 1] on a random batch, and 0 (not NaN) when no query has a positive"

    _simple("smooth_ap_loss.range", _lab, "smooth_ap_loss", 0.2,
            "returns a 0-d loss in [0, 1]; 0 when no query has a positive (no NaN)",
            lambda: [smooth_ap_batch(4, 4), Call("smooth_ap_loss", [unit_rows(5, 8, 4), torch.arange(5)], {"tau": 0.1})],
            _range_and_no_positive)

    vectorized_check(_lab, "smooth_ap_loss", 0.3, lambda s: smooth_ap_batch(4 * s, 4, instrument=True))

    def _memory(outcomes, state, ctx):
        failure = _failed(outcomes)
        if failure:
            return False, failure
        (small_b, large_b), (small, large) = MEMORY_BATCHES, [memory_used(o.counts) for o in outcomes]
        if small is None or large is None:
            return False, "the call could not be measured"
        m = MEMORY_PER_CLASS
        unit = large_b * m * large_b * 4  # one [B, m, B] float32 tensor at the large batch
        bound, cube = MEMORY_BOUND_UNITS * unit, large_b ** 3 * 4
        growth = large[0] / max(small[0], 1)
        grew = (f"from batch {small_b} to {large_b} it grew {growth:.1f}x ({_mb(small[0])} -> {_mb(large[0])}; "
                f"B^2 m grows {(large_b / small_b) ** 2:g}x, B^3 {(large_b / small_b) ** 3:g}x)")
        where = f"at batch B = {large_b} ({large_b // m} classes x m = {m} images)"
        if large[0] > bound or growth > MEMORY_GROWTH_LIMIT:
            what = (f"had up to {_mb(large[0])} allocated at once" if large[1] == "allocated" else
                    f"worked on a tensor spanning {_mb(large[0])} (memory allocated before the call counts too)")
            vmap = (" A function vmapped over the queries counts its batched tensors: [B, B] per query is "
                    "[B, B, B] in all." if ctx.source and "vmap" in ctx.source else "")
            return False, (f"{where} your function, with its backward pass, {what}, like B^3: a [B, B, B] float "
                           f"tensor alone is {_mb(cube)}, a [B, m, B] one {_mb(unit)}, and the limit is {_mb(bound)} "
                           f"({MEMORY_BOUND_UNITS} [B, m, B] float tensors); {grew}. Gather each query's m - 1 "
                           "positives first, so that the tensors are [B, m - 1, B], not [B, B, B]." + vmap)
        return True, (f"{where} your function, with its backward pass, had at most {_mb(large[0])} allocated at once "
                      f"({large[0] / unit:.1f} [B, m, B] float tensors; a [B, B, B] one is {_mb(cube)}); {grew}")

    register(Check(id="smooth_ap_loss.memory", lab_id=_lab, function="smooth_ap_loss", points=0.4,
                   description=f"memory O(B^2 m) for m images per class, not O(B^3): the most memory allocated "
                               f"at once by the call and its backward pass at batch {MEMORY_BATCHES[0]} and "
                               f"{MEMORY_BATCHES[1]} ({MEMORY_PER_CLASS} images per class)",
                   prepare=lambda: ([smooth_ap_memory_call(b) for b in MEMORY_BATCHES], None),
                   judge=_memory))


def _all_judged(outcomes, ctx, judges):
    """Judge the i-th outcome with the i-th judge: passed when all pass; the first failure's message."""
    messages = []
    for outcome, judge in zip(outcomes, judges):
        passed, message = judge([outcome], ctx)
        if not passed:
            return False, message
        messages.append(message)
    return True, "; ".join(messages)


# ----------------------------------------------------------------------------------------------
# Lab 4: recall_at_k, nmi, f1, norm_softmax_loss, arcface_loss


def _float_value(value, name):
    """``(float, None)`` for a Python or 0-d tensor number, else ``(None, message)``."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value), None
    return None, f"{name} should return a finite float, got {describe_tensor(value)}"


def recall_value(value, ks):
    """``({K: float}, None)`` for a Recall@K result with exactly the keys ``ks``, else ``(None, message)``."""
    if not isinstance(value, dict):
        return None, f"recall_at_k should return a dict {{K: recall}}, got {describe_tensor(value)}"
    keys = sorted(int(k) for k in value if isinstance(k, int) or (isinstance(k, torch.Tensor) and k.numel() == 1))
    if keys != sorted(ks):
        return None, f"recall_at_k should return one value per K in {list(ks)}, got keys {sorted(map(str, value))}"
    out = {}
    for k, v in value.items():
        number, problem = _float_value(v, f"Recall@{int(k)}")
        if problem:
            return None, problem
        out[int(k)] = number
    return out, None


def _circle_call(function, degrees, labels, **kwargs):
    return Call(function, [_points_on_circle(*degrees), torch.tensor(labels)], kwargs)


def _two_blobs(jitter_seed: int = 0) -> torch.Tensor:
    """8 unit rows ``[8, 2]``: four near e1, then four near e2 (k-means finds them whatever its seed)."""
    g = torch.Generator().manual_seed(jitter_seed)
    centers = torch.eye(2, dtype=torch.float64).repeat_interleave(4, dim=0)
    return torch.nn.functional.normalize(centers + 1e-3 * torch.randn(8, 2, generator=g, dtype=torch.float64), dim=1)


def static_loop_check(lab: str, function: str, points: float, allowed_helper: str):
    """No Python loop in ``function`` and its helpers, except in the helper ``allowed_helper``
    (k-means iterates by nature). A static check of the source only."""

    def judge(outcomes, state, ctx):
        if ctx.source is None:
            return False, "the source of the function is not available to check"
        problems = [p for p in loop_violations(ctx.source, function) if not p.endswith(f"(in the helper {allowed_helper})")]
        if problems:
            return False, "use tensor operations instead of Python loops: " + "; ".join(problems[:4])
        return True, f"no Python loop (outside {allowed_helper})"

    return register(Check(id=f"{function}.vectorized", lab_id=lab, function=function, points=points,
                          description=f"{function} uses tensor operations, no Python loop outside {allowed_helper}",
                          prepare=lambda: ([], None), judge=judge))


for _lab in ("lab4_beyond",):

    def _expect_recall(expected, what, hint=None):
        def judge(outcomes, ctx):
            got, problem = parsed(outcomes, recall_value, list(expected))
            if problem:
                return False, problem
            if any(abs(got[k] - v) > 1e-6 for k, v in expected.items()):
                advice = f" ({hint[1]})" if hint and all(abs(got[k] - v) < 1e-6 for k, v in hint[0].items()) else ""
                return False, f"{what}: expected {expected}, got {got}{advice}"
            return True, f"{what}: {expected}"
        return judge

    # four points at 0, 10, 20, 180 degrees, labels 0, 0, 1, 1: the nearest positive of each is
    # 1st, 1st (tied with a negative: ties do not count against it), 3rd and 1st
    _simple("recall_at_k.hand_example", _lab, "recall_at_k", 0.3,
            "hand-worked example: points at 0, 10, 20, 180 degrees, labels [0, 0, 1, 1], K = 1, 2, 3",
            lambda: [_circle_call("recall_at_k", (0, 10, 20, 180), [0, 0, 1, 1], ks=(1, 2, 3))],
            _expect_recall({1: 0.75, 2: 0.75, 3: 1.0}, "points at 0, 10, 20, 180 degrees, labels [0, 0, 1, 1]"))
    # labels 0, 1, 0, 1 at 0, 10, 90, 100 degrees: every nearest other item is a negative
    _simple("recall_at_k.leave_one_out", _lab, "recall_at_k", 0.3,
            "an item is not its own neighbour: Recall@1 is 0 when every nearest other item is a negative",
            lambda: [_circle_call("recall_at_k", (0, 10, 90, 100), [0, 1, 0, 1], ks=(1, 2, 3))],
            _expect_recall({1: 0.0, 2: 0.5, 3: 1.0}, "points at 0, 10, 90, 100 degrees, labels [0, 1, 0, 1]",
                           hint=({1: 1.0}, "each query seems to find itself: leave it out of its own neighbours")))
    # the same with a fifth item of a label of its own, far from the others: it cannot be hit
    _simple("recall_at_k.singletons", _lab, "recall_at_k", 0.2,
            "queries whose label no other item has are left out",
            lambda: [_circle_call("recall_at_k", (0, 10, 90, 100, 225), [0, 1, 0, 1, 2], ks=(1, 2, 3))],
            _expect_recall({1: 0.0, 2: 0.5, 3: 1.0}, "the same plus a point at 225 degrees with label 2",
                           hint=({3: 0.8}, "the item without a positive should not count as a query")))
    vectorized_check(_lab, "recall_at_k", 0.2,
                     lambda s: Call("recall_at_k", [unit_rows(24 * s, 8, 5), torch.arange(24 * s) % 4], {"ks": (1, 2, 4)},
                                    instrument=True))

    # two tight groups of four (near e1 and near e2) against labels; k-means with 2 clusters finds
    # the groups: NMI and pairwise F1 follow from the 2 x 2 table of counts
    for _function, _points, _values in (
        ("nmi", (0.3, 0.3, 0.2), (1.0, 0.0, 0.188722)),
        ("f1", (0.3, 0.3, 0.2), (1.0, 1 / 3, 0.5)),
    ):
        def _expect_score(expected, what, function=_function):
            def judge(outcomes, ctx):
                got, problem = parsed(outcomes, _float_value, function)
                if problem:
                    return False, problem
                if abs(got - expected) > 1e-4:
                    return False, f"{what}: expected {expected:.4f}, got {got:.4f} (tolerance 1e-4)"
                return True, f"{what}: {expected:.4f}"
            return judge

        for _name, _labels, _pts, _value, _what in (
            ("perfect", [0, 0, 0, 0, 1, 1, 1, 1], _points[0], _values[0], "clusters equal to the classes"),
            ("mixed", [0, 0, 1, 1, 0, 0, 1, 1], _points[1], _values[1], "each cluster holds two of each class"),
            ("hand_example", [0, 0, 0, 1, 1, 1, 1, 0], _points[2], _values[2],
             "clusters holding labels [0, 0, 0, 1] and [1, 1, 1, 0]"),
        ):
            _simple(f"{_function}.{_name}", _lab, _function, _pts,
                    f"{_function} of two tight groups of four points: {_what}",
                    lambda labels=_labels, function=_function: [Call(function, [_two_blobs(), torch.tensor(labels)], {})],
                    _expect_score(_value, f"two tight groups of four, {_what}"))
        static_loop_check(_lab, _function, 0.2, "kmeans")

    # one feature at 30 degrees, class 0; the class weights e1 and e2: cosines 0.866 and 0.5
    _E2 = torch.eye(2, dtype=torch.float64)
    _F30, _Y0 = _points_on_circle(30), torch.tensor([0])

    def _softmax_loss(margin_logit_gap):
        return math.log(1 + math.exp(-margin_logit_gap))

    _expect_ns = functools.partial(expect_loss, "norm_softmax_loss")
    _simple("norm_softmax_loss.hand_example", _lab, "norm_softmax_loss", 0.3,
            "one feature at 30 degrees of class 0, weights e1 and e2: cross-entropy of the cosines over the temperature",
            lambda: [Call("norm_softmax_loss", [_F30, _Y0, _E2], {"temperature": 1.0}),
                     Call("norm_softmax_loss", [_F30, _Y0, _E2], {"temperature": 0.5})],
            lambda outcomes, ctx: _all_judged(outcomes, ctx, [
                _expect_ns(_softmax_loss(0.366025), "temperature 1: log(1 + exp(-(cos 30 - cos 60) / 1))"),
                _expect_ns(_softmax_loss(0.732051), "temperature 0.5: log(1 + exp(-(cos 30 - cos 60) / 0.5))")]))
    _simple("norm_softmax_loss.normalizes", _lab, "norm_softmax_loss", 0.2,
            "features and weights are L2-normalized inside: scaling them changes nothing",
            lambda: [Call("norm_softmax_loss", [3 * _F30, _Y0, 2 * _E2], {"temperature": 1.0})],
            _expect_ns(_softmax_loss(0.366025), "feature x 3 and weights x 2, temperature 1"))
    vectorized_check(_lab, "norm_softmax_loss", 0.2,
                     lambda s: Call("norm_softmax_loss", [unit_rows(32 * s, 8, 6), torch.arange(32 * s) % 5,
                                                          unit_rows(5, 8, 7)], {}, instrument=True))

    _expect_arc = functools.partial(expect_loss, "arcface_loss")
    _simple("arcface_loss.hand_example", _lab, "arcface_loss", 0.3,
            "one feature at 30 degrees of class 0, weights e1 and e2: the margin is added to the true angle",
            lambda: [Call("arcface_loss", [_F30, _Y0, _E2], {"margin": 0.5, "scale": 64.0}),
                     Call("arcface_loss", [_F30, _Y0, _E2], {"margin": 0.2, "scale": 10.0})],
            lambda outcomes, ctx: _all_judged(outcomes, ctx, [
                _expect_arc(_softmax_loss(64 * (math.cos(math.radians(30) + 0.5) - 0.5)),
                            "margin 0.5, scale 64: log(1 + exp(-64 (cos(30 deg + 0.5) - cos 60)))"),
                _expect_arc(_softmax_loss(10 * (math.cos(math.radians(30) + 0.2) - 0.5)),
                            "margin 0.2, scale 10: log(1 + exp(-10 (cos(30 deg + 0.2) - cos 60)))")]))
    _simple("arcface_loss.no_margin", _lab, "arcface_loss", 0.2,
            "with margin 0 it is the normalized softmax loss at temperature 1 / scale",
            lambda: [Call("arcface_loss", [_F30, _Y0, _E2], {"margin": 0.0, "scale": 2.0})],
            _expect_arc(_softmax_loss(0.732051), "margin 0, scale 2: log(1 + exp(-2 (cos 30 - cos 60)))"))
    vectorized_check(_lab, "arcface_loss", 0.2,
                     lambda s: Call("arcface_loss", [unit_rows(32 * s, 8, 8), torch.arange(32 * s) % 5,
                                                     unit_rows(5, 8, 9)], {}, instrument=True))


# ----------------------------------------------------------------------------------------------
# Lab 4: the NormSoftmax head (a class: the checks build it, then call it or read an attribute)


def _head_call(*then, args=(16, 5), **kwargs) -> Call:
    return Call("NormSoftmax", list(args), kwargs, then=list(then))


for _lab in ("lab4_beyond",):
    _X = unit_rows(8, 16, 10) * 3 + 1  # [8, 16]: rows of any scale and offset

    def _head_judge(dim: int, made: str):
        """Judge of ``made(x)`` for x [8, 16] ([8, dim] unit rows) and ``made.weight`` ([5, dim]), then,
        with a third call, ``made.temperature`` (0.05 by default)."""
        def judge(outcomes, ctx):
            failure = _failed(outcomes)
            if failure:
                return False, failure
            embedding, weight = outcomes[0].value, outcomes[1].value
            problem = (expect_tensor(embedding, f"{made}(x) for x [8, 16]", [8, dim])
                       or expect_tensor(weight, f"{made}.weight", [5, dim]))
            if problem:
                return False, problem
            if not torch.allclose(embedding.norm(dim=1), torch.ones(8), atol=1e-5):
                return False, "the embedding rows should be L2-normalized (norm 1)"
            if len(outcomes) > 2:
                temperature, problem = _float_value(outcomes[2].value, f"{made}.temperature")
                if problem or abs(temperature - 0.05) > 1e-12:
                    return False, problem or f"the default temperature should be 0.05, got {temperature}"
            temperature = ", temperature 0.05" if len(outcomes) > 2 else ""
            return True, f"{made}: unit embeddings [8, {dim}], class weights [5, {dim}]{temperature}"
        return judge

    _simple("NormSoftmax.shapes", _lab, "NormSoftmax", 0.3,
            "NormSoftmax(16, 5): unit embeddings [B, 16], a weight [5, 16] per class, temperature 0.05",
            lambda: [_head_call({"call": [_X]}), _head_call({"attr": "weight"}), _head_call({"attr": "temperature"})],
            _head_judge(16, "NormSoftmax(16, 5)"))

    def _head_layer_norm(outcomes, ctx):
        embedding, problem = parsed(outcomes, lambda v: (v, expect_tensor(v, "NormSoftmax(4, 3)(x)", [2, 4])))
        if problem:
            return False, problem
        expected = torch.tensor([[-0.6708, -0.2236, 0.2236, 0.6708]] * 2)
        if not torch.allclose(embedding.float(), expected, atol=1e-4):
            return False, (f"rows [1, 2, 3, 4] and [10, 20, 30, 40] should give {expected[0].tolist()} (layer "
                           f"normalization without learned parameters, then L2), got {embedding.tolist()}")
        return True, "layer normalization, then L2: [1, 2, 3, 4] and its 10 times give [-0.67, -0.22, 0.22, 0.67]"

    _simple("NormSoftmax.layer_norm", _lab, "NormSoftmax", 0.3,
            "the embedding is the layer-normalized input (no learned scale or shift), L2-normalized",
            lambda: [_head_call({"call": [torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]])]},
                                args=(4, 3))],
            _head_layer_norm)

    _simple("NormSoftmax.projection", _lab, "NormSoftmax", 0.2,
            "with embedding_dim, a linear projection to that size before the L2 normalization",
            lambda: [_head_call({"call": [_X]}, embedding_dim=4), _head_call({"attr": "weight"}, embedding_dim=4)],
            _head_judge(4, "NormSoftmax(16, 5, embedding_dim=4)"))


# ----------------------------------------------------------------------------------------------
# Lab 5: kl_divergence, reparameterize, semihard_triplets, semihard_triplet_loss, dvml_loss


def triplets_value(value, name="semihard_triplets"):
    """``(set of (a, p, n) int triples, None)`` for three equal-length int [T] tensors, else ``(None, message)``."""
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        return None, f"{name} should return three tensors (anchors, positives, negatives), got {describe_tensor(value)}"
    for part, what in zip(value, ("anchors", "positives", "negatives")):
        if not isinstance(part, torch.Tensor) or part.ndim != 1 or part.is_floating_point() or part.dtype == torch.bool:
            return None, f"the {what} should be an integer [T] tensor of indices, got {describe_tensor(part)}"
    if not len(value[0]) == len(value[1]) == len(value[2]):
        return None, f"anchors, positives and negatives differ in length: {[len(v) for v in value]}"
    return set(zip(*(v.tolist() for v in value))), None


def dvml_value(value, name="dvml_loss"):
    """``((total, {term: float}), None)`` for dvml_loss's (0-d tensor, dict of 0-d tensors), else ``(None, message)``."""
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not isinstance(value[1], dict):
        return None, f"{name} should return (total, terms), terms a dict, got {describe_tensor(value)}"
    total, problem = _loss_value(value[0], f"{name}'s total")
    if problem:
        return None, problem
    missing = sorted(set(DVML_TERMS) - set(value[1]))
    if missing:
        return None, f"{name}'s terms lack {missing} (expected the keys {list(DVML_TERMS)})"
    terms = {}
    for key in DVML_TERMS:
        terms[key], problem = _loss_value(value[1][key], f"the term {key!r}")
        if problem:
            return None, problem
    return (total, terms), None


#: dvml_loss's terms, in the order of their weights lambda1..lambda4.
DVML_TERMS = ("kl", "reconstruction", "triplet_synthesized", "triplet_invariant")


def _dvml_example() -> list:
    """dvml_loss's inputs [features, mu, logvar, z_inv, z_var, reconstruction, labels] worked by hand.

    features: rows e1, e2, e3, (1, 1, 1); the reconstruction is off by 0.5 and -1 in two entries:
    MSE (0.25 + 1) / 12. mu, logvar: one row N((1, 0), diag(1, 4)), three rows N(0, I): KL
    0.5 (1 + 4 - 1 - ln 4) / 4. z_inv: the semi-hard example of semihard_triplets (0, 15, 25, 60
    degrees, labels 0, 0, 1, 1, margin 0.2); z_inv + z_var: points at 0, 20, 25, 60 degrees, whose
    semi-hard triplets are (0, 1, 2) and (3, 2, 1).
    """
    f64 = torch.float64
    features = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=f64)
    reconstruction = features + torch.tensor([[0.5, 0, 0], [0, 0, 0], [0, 0, -1], [0, 0, 0]], dtype=f64)
    mu = torch.tensor([[1, 0], [0, 0], [0, 0], [0, 0]], dtype=f64)
    logvar = torch.tensor([[0, math.log(4)], [0, 0], [0, 0], [0, 0]], dtype=f64)
    z_inv = _points_on_circle(0, 15, 25, 60)
    z_var = _points_on_circle(0, 20, 25, 60) - z_inv
    return [features, mu, logvar, z_inv, z_var, reconstruction, torch.tensor([0, 0, 1, 1])]


def _gaussian_moments(b: int = 20_000) -> list:
    """mu [b, 2] rows (1, -2) and logvar rows (ln 4, ln 1/4): draws of standard deviation (2, 0.5)."""
    mu = torch.tensor([[1.0, -2.0]], dtype=torch.float64).expand(b, 2).clone()
    logvar = torch.tensor([[math.log(4.0), math.log(0.25)]], dtype=torch.float64).expand(b, 2).clone()
    return [mu, logvar]


for _lab in ("lab5_dvml",):
    _expect_kl = functools.partial(expect_loss, "kl_divergence")
    # one row N((1, 0), diag(1, 4)): 0.5 ((1 + 1 - 1 - 0) + (4 + 0 - 1 - ln 4)) = 1.306853; a row
    # N(0, I) adds 0; the mean over the two rows halves it
    _simple("kl_divergence.hand_example", _lab, "kl_divergence", 0.3,
            "KL of N((1, 0), diag(1, 4)) and N(0, I) to N(0, I), summed over dimensions, averaged over rows",
            lambda: [Call("kl_divergence", [torch.tensor([[1.0, 0.0], [0.0, 0.0]]),
                                            torch.tensor([[0.0, math.log(4.0)], [0.0, 0.0]])], {})],
            _expect_kl(0.653426, "rows N((1, 0), diag(1, 4)) and N(0, I): (1.306853 + 0) / 2",
                       hints=((1.306853, "average over the rows of the batch, do not sum them"),
                              (0.326713, "sum over the dimensions, do not average them"))))
    _simple("kl_divergence.prior", _lab, "kl_divergence", 0.2,
            "the KL of the prior N(0, I) to itself is 0",
            lambda: [Call("kl_divergence", [torch.zeros(3, 4), torch.zeros(3, 4)], {})],
            _expect_kl(0.0, "mu = 0, logvar = 0"))
    vectorized_check(_lab, "kl_divergence", 0.2,
                     lambda s: Call("kl_divergence", [unit_rows(16 * s, 8, 40), unit_rows(16 * s, 8, 41)], {},
                                    instrument=True))

    def _moments(outcomes, ctx):
        draws, problem = parsed(outcomes, lambda v: (v, expect_tensor(v, "reparameterize(mu, logvar)", [20_000, 2])))
        if problem:
            return False, problem
        mean, std = draws.double().mean(dim=0), draws.double().std(dim=0)
        if torch.allclose(std, torch.tensor([4.0, 0.25], dtype=torch.float64), rtol=0.05):
            return False, f"standard deviations {std.tolist()}: sigma is exp(logvar / 2), not exp(logvar)"
        if not (_close(mean, [1.0, -2.0], 0.06) and torch.allclose(std, torch.tensor([2.0, 0.5], dtype=torch.float64),
                                                                    rtol=0.05)):
            return False, (f"20,000 draws of N((1, -2), diag(4, 1/4)) should have means near (1, -2) and standard "
                           f"deviations near (2, 0.5), got means {mean.tolist()} and deviations {std.tolist()}")
        return True, "20,000 draws of N((1, -2), diag(4, 1/4)): means near (1, -2), deviations near (2, 0.5)"

    _simple("reparameterize.moments", _lab, "reparameterize", 0.4,
            "draws of N(mu, diag(exp(logvar))) have mean mu and standard deviation exp(logvar / 2)",
            lambda: [Call("reparameterize", _gaussian_moments(), {})], _moments)

    def _shape_and_dtype(outcomes, ctx):
        draws, problem = parsed(outcomes, lambda v: (v, expect_tensor(v, "reparameterize(mu, logvar)", [5, 3])))
        if problem:
            return False, problem
        if draws.dtype != torch.float32:
            return False, f"float32 mu and logvar should give a float32 draw, got {draws.dtype}"
        if torch.equal(draws, torch.zeros(5, 3)):
            return False, "the draw is mu itself: add sigma times a standard normal eps"
        return True, "mu, logvar [5, 3] float32 give a draw [5, 3] float32"

    _simple("reparameterize.shape", _lab, "reparameterize", 0.1,
            "a draw has the shape and dtype of mu",
            lambda: [Call("reparameterize", [torch.zeros(5, 3), torch.zeros(5, 3)], {})], _shape_and_dtype)
    vectorized_check(_lab, "reparameterize", 0.2,
                     lambda s: Call("reparameterize", [unit_rows(16 * s, 8, 42), unit_rows(16 * s, 8, 43)], {},
                                    instrument=True))

    def _expect_triplets(expected, what, hints=()):
        def judge(outcomes, ctx):
            got, problem = parsed(outcomes, triplets_value)
            if problem:
                return False, problem
            if got != expected:
                advice = next((f" ({text})" for value, text in hints if got == value), "")
                return False, f"{what}: expected the triplets {sorted(expected)}, got {sorted(got)}{advice}"
            return True, f"{what}: {sorted(expected)}"
        return judge

    # points at 0, 15, 25, 60 degrees, labels 0, 0, 1, 1; d = 2 - 2 cos: d(0, 15) = 0.068,
    # d(0, 25) = 0.187, d(15, 25) = 0.030, d(25, 60) = 0.362, d(15, 60) = 0.586, d(0, 60) = 1.
    # margin 0.2: only anchor 0 (positive 1) has a negative in (0.068, 0.268): item 2.
    # margin 0.5: also anchor 3 (positive 2): item 1 at 0.586 in (0.362, 0.862).
    _FOUR, _FOUR_LABELS = (0, 15, 25, 60), [0, 0, 1, 1]
    _simple("semihard_triplets.hand_example", _lab, "semihard_triplets", 0.5,
            "points at 0, 15, 25, 60 degrees, labels [0, 0, 1, 1], margin 0.2: the one semi-hard triplet (0, 1, 2)",
            lambda: [_circle_call("semihard_triplets", _FOUR, _FOUR_LABELS, margin=0.2)],
            _expect_triplets({(0, 1, 2)}, "points at 0, 15, 25, 60 degrees, margin 0.2", hints=(
                ({(0, 1, 2), (1, 0, 2), (2, 3, 0), (2, 3, 1)},  # every n with d(a, n) < d(a, p) + margin
                 "a semi-hard negative is farther than the positive: d(a, p) < d(a, n)"),)))
    _simple("semihard_triplets.margin", _lab, "semihard_triplets", 0.3,
            "the margin bounds the negatives: margin 0.5 adds the triplet (3, 2, 1)",
            lambda: [_circle_call("semihard_triplets", _FOUR, _FOUR_LABELS, margin=0.5)],
            _expect_triplets({(0, 1, 2), (3, 2, 1)}, "points at 0, 15, 25, 60 degrees, margin 0.5"))
    _simple("semihard_triplets.none", _lab, "semihard_triplets", 0.2,
            "a batch of one class has no triplet: three empty tensors",
            lambda: [_circle_call("semihard_triplets", _FOUR, [3, 3, 3, 3], margin=0.5)],
            _expect_triplets(set(), "four points of one label"))
    vectorized_check(_lab, "semihard_triplets", 0.2,
                     lambda s: Call("semihard_triplets", [unit_rows(12 * s, 8, 44), torch.arange(12 * s) % 3],
                                    {"margin": 0.5}, instrument=True))

    _expect_sh = functools.partial(expect_loss, "semihard_triplet_loss")
    _simple("semihard_triplet_loss.hand_example", _lab, "semihard_triplet_loss", 0.3,
            "the hinge averaged over the semi-hard triplets of the 0, 15, 25, 60 degrees example",
            lambda: [_circle_call("semihard_triplet_loss", _FOUR, _FOUR_LABELS, margin=0.2),
                     _circle_call("semihard_triplet_loss", _FOUR, _FOUR_LABELS, margin=0.5)],
            lambda outcomes, ctx: _all_judged(outcomes, ctx, [
                _expect_sh(0.080764, "margin 0.2, triplet (0, 1, 2): d(0, 15) - d(0, 25) + 0.2"),
                _expect_sh(0.328337, "margin 0.5: the mean over (0, 1, 2) and (3, 2, 1)",
                           hints=((0.656673, "average over the triplets, do not sum"),))]))
    _simple("semihard_triplet_loss.none", _lab, "semihard_triplet_loss", 0.2,
            "without a semi-hard triplet the loss is 0 (not NaN)",
            lambda: [_circle_call("semihard_triplet_loss", _FOUR, [3, 3, 3, 3], margin=0.5)],
            _expect_sh(0.0, "four points of one label", hints=()))
    vectorized_check(_lab, "semihard_triplet_loss", 0.2,
                     lambda s: Call("semihard_triplet_loss", [unit_rows(12 * s, 8, 45), torch.arange(12 * s) % 3],
                                    {"margin": 0.5}, instrument=True))

    # dvml_loss on _dvml_example with lambdas (1, 2, 3, 4): KL 1.306853 / 4, MSE 1.25 / 12, the
    # synthesized triplets' mean hinge 0.113508, the invariant one's 0.080764 (margin 0.2)
    _DVML_EXPECTED = {"kl": 0.326713, "reconstruction": 0.104167, "triplet_synthesized": 0.113508,
                      "triplet_invariant": 0.080764}

    def _dvml_terms(keys, what):
        def judge(outcomes, ctx):
            got, problem = parsed(outcomes, dvml_value)
            if problem:
                return False, problem
            off = {k: round(got[1][k], 6) for k in keys if abs(got[1][k] - _DVML_EXPECTED[k]) > 1e-4}
            if off:
                return False, f"{what}: expected {({k: _DVML_EXPECTED[k] for k in keys})}, got {off} for {sorted(off)}"
            return True, f"{what}: " + ", ".join(f"{k} {_DVML_EXPECTED[k]:.4f}" for k in keys)
        return judge

    def _dvml_call():
        return Call("dvml_loss", _dvml_example(), {"lambdas": (1.0, 2.0, 3.0, 4.0), "margin": 0.2}, key="dvml.example")

    _simple("dvml_loss.kl_and_reconstruction", _lab, "dvml_loss", 0.3,
            "the terms kl (KL to N(0, I)) and reconstruction (mean squared error over all entries)",
            lambda: [_dvml_call()],
            _dvml_terms(("kl", "reconstruction"), "the worked example (see the check's description)"))
    _simple("dvml_loss.triplet_terms", _lab, "dvml_loss", 0.3,
            "triplet_synthesized on z_inv + z_var, triplet_invariant on z_inv, both semi-hard",
            lambda: [_dvml_call()],
            _dvml_terms(("triplet_synthesized", "triplet_invariant"), "z_inv at 0, 15, 25, 60 degrees, z_inv + z_var "
                                                                      "at 0, 20, 25, 60"))

    def _dvml_total(outcomes, ctx):
        got, problem = parsed(outcomes, dvml_value)
        if problem:
            return False, problem
        total, terms = got
        weighted = sum(w * terms[k] for w, k in zip((1.0, 2.0, 3.0, 4.0), DVML_TERMS))
        if abs(total - weighted) > 1e-5:
            return False, f"with lambdas (1, 2, 3, 4) the total should be the weighted sum of the terms {weighted:.5f}, got {total:.5f}"
        return True, f"total = 1 kl + 2 reconstruction + 3 triplet_synthesized + 4 triplet_invariant = {weighted:.4f}"

    _simple("dvml_loss.total", _lab, "dvml_loss", 0.3,
            "the total is lambda1 L1 + lambda2 L2 + lambda3 L3 + lambda4 L4 of its terms",
            lambda: [_dvml_call()], _dvml_total)
    vectorized_check(_lab, "dvml_loss", 0.2,
                     lambda s: Call("dvml_loss", [unit_rows(12 * s, 16, 46), unit_rows(12 * s, 4, 47),
                                                  unit_rows(12 * s, 4, 48), unit_rows(12 * s, 4, 49),
                                                  unit_rows(12 * s, 4, 50), unit_rows(12 * s, 16, 51),
                                                  torch.arange(12 * s) % 3], {}, instrument=True))
