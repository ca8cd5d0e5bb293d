"""Lab 2: metric learning with the triplet loss; the trained network is a graded deliverable.

Its public checks follow the spec, with the reading of a submitted checkpoint
(:func:`submitted_checkpoint`) that the grader's checks of the network start from too.
"""

import functools
import math
import os

import torch

from labtools.checks.builders import simple_check, synthetic_images, unit_rows, vectorized_check
from labtools.checks.registry import Call
from labtools.judges import describe_tensor, expect_loss, failed
from labtools.labs import FileDeliverable, LabSpec, Report, Solution

__all__ = ["SPEC", "train_call", "history_losses", "CHECKPOINT_GATES", "MAX_CHECKPOINT_BYTES", "MAX_CHECKPOINT_CLASSES",
           "submitted_checkpoint"]

SPEC = LabSpec(
    id="lab2_triplet",
    title="Lab 2: Metric learning with the triplet loss",
    solutions=(Solution("distances", extracted=True),
               Solution("evaluate_AP", reference="lab1_retrieval", extracted=True),
               Solution("evaluate_mAP", reference="lab1_retrieval", extracted=True),
               Solution("triplet_loss", 2.0), Solution("train_triplets", 1.0)),
    files=(FileDeliverable("checkpoint", "triplet_net.pt", 3.0, models=("mnist_triplet.pt",)),),
    reports=(Report("report_settings", 0.5), Report("report_training", 0.5), Report("report_comparison", 0.5)),
)


# ----------------------------------------------------------------------------------------------
# triplet_loss


_E = torch.eye(3)
_expect_loss = functools.partial(expect_loss, "triplet_loss")

simple_check("triplet_loss.zero_when_separated", SPEC.id, "triplet_loss", 0.2,
             "loss is 0 when all positives are much closer than all negatives",
             lambda: [Call("triplet_loss", [torch.stack([_E[0], _E[0], -_E[0], -_E[0]]), torch.tensor([0, 0, 1, 1])],
                           {"alpha": 0.5, "num_anchors": 4})],
             _expect_loss(0.0, "positives at distance 0 and negatives at 4 with alpha 0.5 give loss"))

simple_check("triplet_loss.hand_example", SPEC.id, "triplet_loss", 0.3,
             "hand-worked example: e1, e2 (label 0) and e1 (label 1), alpha 0.5, 3 anchors",
             lambda: [Call("triplet_loss", [torch.stack([_E[0], _E[1], _E[0]]), torch.tensor([0, 0, 1])],
                           {"alpha": 0.5, "num_anchors": 3})],
             _expect_loss(3.0, "features [e1, e2, e1], labels [0, 0, 1], alpha 0.5, 3 anchors: 2.5 + 0.5 + 0 ="))

simple_check("triplet_loss.hinge_sign", SPEC.id, "triplet_loss", 0.2,
             "a positive far away and a negative close by give max(d(a,p) - d(a,n) + alpha, 0) > 0",
             lambda: [Call("triplet_loss", [torch.stack([_E[0], -_E[0], _E[0]]), torch.tensor([0, 0, 1])],
                           {"alpha": 0.5, "num_anchors": 1})],
             _expect_loss(4.5, "anchor e1, positive -e1 (d = 4), negative e1 (d = 0), alpha 0.5: loss 4 - 0 + 0.5 ="))


def _tl_vec_call(s):
    n = 16 * s
    labels = torch.arange(n) % 4
    return Call("triplet_loss", [unit_rows(n, 8, 9), labels], {"alpha": 0.5, "num_anchors": 4}, instrument=True)


vectorized_check(SPEC.id, "triplet_loss", 0.3, _tl_vec_call, allowed_for=1)


# ----------------------------------------------------------------------------------------------
# train_triplets and the checkpoint


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
#: networks, :mod:`autograder.labs.lab2_triplet.copies`); a student's kit has none.
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


def _train_decreases(outcomes, ctx):
    failure = failed(outcomes)
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


simple_check("train_triplets.loss_decreases", SPEC.id, "train_triplets", 0.3,
             "the history's loss decreases on a tiny seeded run (3 epochs, 40 toy images)",
             lambda: [train_call()], _train_decreases)


def _train_checkpoint(outcomes, ctx):
    failure = failed(outcomes)
    if failure:
        return False, failure
    from labtools.models import load_checkpoint

    path = outcomes[0].scratch / "check_triplet.pt"
    try:
        load_checkpoint(path)
    except Exception as error:
        return False, f"train_triplets should save a checkpoint loadable by load_checkpoint: {error}"
    return True, "writes a checkpoint that load_checkpoint reads"


simple_check("train_triplets.writes_checkpoint", SPEC.id, "train_triplets", 0.2,
             "train_triplets writes a checkpoint that labtools.models.load_checkpoint loads",
             lambda: [train_call()], _train_checkpoint)


def _checkpoint_loads(outcomes, ctx):
    path = ctx.obj if ctx.obj is not None else (ctx.files / "triplet_net.pt" if ctx.files else None)
    _, _, problem = submitted_checkpoint(path)
    if problem:
        return False, problem
    return True, "triplet_net.pt loads as the lab's ConvNet, with one finite loss per epoch of training it records"


simple_check("checkpoint.loads", SPEC.id, "checkpoint", 0.5,
             "the submitted triplet_net.pt loads as the lab's ConvNet and its history holds one loss per epoch it "
             "records (saved by labtools.models.save_checkpoint)",
             lambda: [], _checkpoint_loads, kind="file")
