"""Lab 2, triplets: the reference triplet loss and training (autograder.labs.lab2_triplet.reference), and
the checks of a submitted triplet_net.pt.

A submitted triplet_net.pt earns the checkpoint points only as the student's own ConvNet.

The grader refuses a copy of one of the course's networks (the file, the weights re-saved, converted
to a lower precision, slightly perturbed, with channels permuted or rescaled, the backbone of a
Lab 4 or Lab 5 network), a network of another architecture and a history that contradicts the
epochs the checkpoint records, each with a message in the student's terms; networks that are not
copies pass, even the untrained ConvNet of the course's seed 0, the closest of all to one of the
course's networks. Runs the file checks as the grader does, in this process: no MNIST needed for
the refusals (a refused checkpoint is never measured).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

import autograder.grading.hidden  # noqa: F401  (registers the hidden checks, the copy gate among them)
from autograder.labs.lab2_triplet import copies
from autograder.labs.lab2_triplet.reference import train_triplets, triplet_loss
from autograder.paths import REPO_MODELS
from labtools.checks.engine import evaluate
from labtools.checks.registry import Context, checks_for
from labtools.data import digits_dataset
from labtools.labs.lab2_triplet import CHECKPOINT_GATES, submitted_checkpoint
from labtools.models import ConvNet, EmbeddingNet, load_checkpoint, save_checkpoint

MODELS = REPO_MODELS
COURSE_TRIPLET = MODELS / "mnist_triplet.pt"
ADVICE = "submit the network your train_triplets trained"


# ----------------------------------------------------------------------------------------------
# the reference triplet loss and training


def brute_force_triplet_loss(features, labels, alpha, num_anchors, on_the_sphere=False):
    """The sum of hinges by loops; ``on_the_sphere`` takes d as 2 - 2 <a, b> (equal on unit rows,
    and with the gradient of the kit's distances)."""
    total = 0.0
    if on_the_sphere:
        d = lambda a, b: 2 - 2 * features[a] @ features[b]
    else:
        d = lambda a, b: ((features[a] - features[b]) ** 2).sum()
    for a in range(num_anchors):
        for p in range(len(labels)):
            for n in range(len(labels)):
                if p != a and labels[p] == labels[a] and labels[n] != labels[a]:
                    total += max(d(a, p) - d(a, n) + alpha, 0.0)
    return total


def test_triplet_loss_matches_the_definition():
    g = torch.Generator().manual_seed(1)
    features = torch.nn.functional.normalize(torch.randn(24, 8, generator=g), dim=1)
    labels = torch.randint(4, (24,), generator=g)
    expected = brute_force_triplet_loss(features, labels, 0.5, 10)
    assert triplet_loss(features, labels, alpha=0.5, num_anchors=10).item() == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 5.0])
def test_triplet_loss_gradient_matches_the_definition(alpha):
    # the pairs that are not triplets are masked with infinities: they must pass no gradient,
    # also with alpha 5, where every hinge of a real triplet is active
    g = torch.Generator().manual_seed(2)
    features = torch.nn.functional.normalize(torch.randn(20, 8, generator=g), dim=1)
    labels = torch.randint(4, (20,), generator=g)
    ours, theirs = features.clone().requires_grad_(), features.clone().requires_grad_()
    triplet_loss(ours, labels, alpha=alpha, num_anchors=6).backward()
    brute_force_triplet_loss(theirs, labels, alpha, 6, on_the_sphere=True).backward()
    assert torch.isfinite(ours.grad).all() and ours.grad.abs().sum() > 0
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-5)


def small_set(n=200):
    images, labels = digits_dataset().tensors
    return TensorDataset(images[:n], labels[:n])


def test_train_triplets_lowers_the_loss_saves_and_resumes(tmp_path, capsys):
    torch.manual_seed(0)
    net = ConvNet()
    checkpoint = tmp_path / "triplet.pt"
    history = train_triplets(net, small_set(400), epochs=3, lr=0.01, batch_size=50, checkpoint=checkpoint)
    assert len(history["loss"]) == 3 and history["loss"][-1] < history["loss"][0]
    assert "epoch 3/3: total triplet loss" in capsys.readouterr().out
    _, record = load_checkpoint(checkpoint)
    assert record["epochs"] == 3 and record["history"]["loss"] == history["loss"]

    resumed = ConvNet()
    history = train_triplets(resumed, small_set(400), epochs=4, lr=0.01, batch_size=50, checkpoint=checkpoint)
    assert "resuming from" in capsys.readouterr().out
    assert len(history["loss"]) == 4


# ----------------------------------------------------------------------------------------------
# a submitted triplet_net.pt

#: The tests of the copy gate compare with the course's networks.
needs_course_networks = pytest.mark.skipif(not COURSE_TRIPLET.is_file(), reason="no models/mnist_triplet.pt")


def course_state(name="mnist_triplet.pt") -> dict[str, torch.Tensor]:
    return torch.load(MODELS / name, weights_only=True)["state_dict"]


def convnet(state: dict[str, torch.Tensor]) -> ConvNet:
    net = ConvNet()
    net.load_state_dict(state)
    return net


def save(path: Path, net, epochs=3, losses=None) -> Path:
    """A checkpoint as train_triplets writes it (``losses``: the history's per-epoch losses)."""
    losses = [1.0 / (e + 1) for e in range(epochs)] if losses is None else losses
    return save_checkpoint(path, net, dataset="MNIST", loss="triplet", seed=1, epochs=epochs,
                           history={"loss": losses, "loss_total": losses})


def permuted_and_rescaled(state):
    """The same function, other weights: channels of conv 0 and conv 6 permuted, rescaled by positive factors."""
    state = {k: v.clone() for k, v in state.items()}
    g = torch.Generator().manual_seed(3)
    p0, p6 = torch.randperm(32, generator=g), torch.randperm(64, generator=g)
    c0 = torch.rand(32, generator=g) * 4 + 0.25
    state["0.weight"], state["0.bias"] = state["0.weight"][p0] * c0[:, None, None, None], state["0.bias"][p0] * c0
    state["3.weight"] = state["3.weight"][:, p0] / c0[None, :, None, None]
    state["6.weight"], state["6.bias"] = state["6.weight"][p6] * 7.0, state["6.bias"][p6] * 7.0
    state["10.weight"] = torch.randn(state["10.weight"].shape, generator=g)  # the features do not use it
    return state


def noisy(state, relative, seed=5):
    g = torch.Generator().manual_seed(seed)
    return {k: v + relative * v.norm() / v.numel() ** 0.5 * torch.randn(v.shape, generator=g) for k, v in state.items()}


@needs_course_networks
def test_the_grader_asks_the_copy_gate():
    assert copies.copied_network in CHECKPOINT_GATES
    names = {name for name, _, _ in copies.instructor_networks()}
    assert "mnist_triplet.pt" in names and "mnist_classifier.pt" in names
    if (MODELS / "lab4").is_dir():
        assert any(name.startswith("lab4/") for name in names)
        parts = dict((name, p) for name, _, p in copies.instructor_networks())
        assert all(set(p) == {"backbone."} for name, p in parts.items() if name.startswith("lab4/"))


@needs_course_networks
@pytest.mark.parametrize("case", ["file", "resaved", "bfloat16", "noise_0.3%", "permuted_rescaled",
                                  "classifier_copy", "lab4_backbone", "lab4_file"])
def test_copies_of_the_course_networks_are_refused(case, tmp_path):
    path = tmp_path / "triplet_net.pt"
    course = "mnist_triplet.pt"
    if case == "file":
        shutil.copy(COURSE_TRIPLET, path)
    elif case == "resaved":  # the weights in a checkpoint of the student's own, with a history of 100 epochs
        save(path, convnet(course_state()), epochs=100)
    elif case == "bfloat16":
        save(path, convnet({k: v.bfloat16().float() for k, v in course_state().items()}))
    elif case == "noise_0.3%":
        save(path, convnet(noisy(course_state(), 0.003)))
    elif case == "permuted_rescaled":
        save(path, convnet(permuted_and_rescaled(course_state())))
    elif case == "classifier_copy":
        course = "mnist_classifier.pt"
        save(path, convnet(course_state(course)))
    else:
        lab4 = sorted((MODELS / "lab4").glob("mnist_*.pt")) if (MODELS / "lab4").is_dir() else []
        if not lab4:
            pytest.skip("no Lab 4 networks in models/lab4")
        course = f"lab4/{lab4[0].name}"
        if case == "lab4_file":
            shutil.copy(lab4[0], path)
        else:
            backbone = {k[len("backbone."):]: v for k, v in course_state(course).items() if k.startswith("backbone.")}
            save(path, convnet(backbone))
    _, _, problem = submitted_checkpoint(path)
    assert problem is not None and f"the course's own network {course}: {ADVICE}" in problem, problem
    assert str(tmp_path) not in problem and "triplet_net.pt" in problem
    results = grade_checkpoint(tmp_path)
    assert all(r.earned == 0 for r in results.values()), {c: r.message for c, r in results.items()}
    assert all(ADVICE in r.message for r in results.values())


@needs_course_networks
def test_distances_of_copies_and_of_distinct_networks():
    """The numbers NEAR_COPY is chosen by (copies.py): copies below it, other networks far above."""
    reference = copies.convnet_parts(course_state())[""]

    def distance(state):
        return copies.weight_distance(copies.convnet_parts(state)[""], reference)

    assert distance(course_state()) == 0
    assert distance(permuted_and_rescaled(course_state())) < 1e-6
    assert distance({k: v.half().float() for k, v in course_state().items()}) < 0.001
    assert distance({k: v.bfloat16().float() for k, v in course_state().items()}) < 0.003
    assert 0.004 < distance(noisy(course_state(), 0.005)) < 0.007
    saved = copies.NEAR_COPY
    try:
        copies.NEAR_COPY = 10.0  # the whole distance, not the lower bound at which matching stops
        for seed in (0, 1):
            torch.manual_seed(seed)
            state = ConvNet().state_dict()
            closest = min(copies.weight_distance(copies.convnet_parts(state)[""], part)
                          for _, _, parts in copies.instructor_networks() for part in parts.values())
            assert closest > 20 * saved, (seed, closest)
    finally:
        copies.NEAR_COPY = saved


@needs_course_networks
def test_networks_that_are_not_copies_pass_the_gate(tmp_path):
    for seed in (0, 1):  # seed 0: the course's initialization, 0.26 from two Lab 4 backbones
        torch.manual_seed(seed)
        path = save(tmp_path / f"seed{seed}.pt", ConvNet())
        net, record, problem = submitted_checkpoint(path)
        assert problem is None and isinstance(net, ConvNet) and record["epochs"] == 3


def grade_checkpoint(folder: Path) -> dict:
    """The checkpoint checks of Lab 2 (public and hidden) on ``folder/triplet_net.pt``, as the grader runs them."""
    checks = [c for c in checks_for("lab2_triplet", "checkpoint", hidden=None)]
    assert {c.kind for c in checks} == {"file"} and len(checks) == 4
    results = evaluate(checks, Context("lab2_triplet", files=folder), lambda calls: [])
    return {r.check.id: r for r in results}


@needs_course_networks
@pytest.mark.parametrize("case, words", [
    ("embedding_net", "holds a network of architecture 'EmbeddingNet', not the lab's ConvNet"),
    ("bare_state_dict", "holds only a state dict"),
    ("history_too_short", "records 100 epochs of training but its history holds 1 per-epoch losses"),
    ("history_nan", "NaN or infinite losses"),
    ("no_epochs", "does not record how many epochs it was trained"),
    ("no_history", "holds no training history"),
    ("not_a_checkpoint", "is not a checkpoint that labtools.models.load_checkpoint can read"),
    ("pickled_code", "is not a checkpoint that labtools.models.load_checkpoint can read"),
    ("huge_head", "does not hold the parameters of the lab's ConvNet"),
    ("wrong_shapes", "does not fit ConvNet"),
    ("missing", "no triplet_net.pt was submitted"),
])
def test_what_is_not_the_labs_convnet_with_its_history_earns_no_checkpoint_point(case, words, tmp_path):
    path = tmp_path / "triplet_net.pt"
    torch.manual_seed(1)
    net = ConvNet()
    if case == "embedding_net":  # a ConvNet inside: it ranks as well, and earned the mAP steps before
        other = EmbeddingNet(sub_centers=0)
        other.backbone.load_state_dict(net.state_dict())
        save(path, other)
    elif case == "bare_state_dict":
        torch.save(net.state_dict(), path)
    elif case == "history_too_short":
        save(path, net, epochs=100, losses=[0.5])
    elif case == "history_nan":
        save(path, net, epochs=2, losses=[0.5, float("nan")])
    elif case in ("no_epochs", "no_history", "huge_head", "wrong_shapes"):
        save(path, net)
        record = torch.load(path, weights_only=True)
        if case == "no_epochs":
            record["epochs"] = "many"
        elif case == "no_history":
            record["history"] = {}
        elif case == "huge_head":
            record["config"] = {"num_classes": 10 ** 9}  # would allocate 1 TB if built from the config
        else:
            record["state_dict"]["3.weight"] = torch.zeros(32, 16, 3, 3)
        torch.save(record, path)
    elif case == "not_a_checkpoint":
        path.write_bytes(b"not a checkpoint")
    elif case == "pickled_code":
        torch.save({"format": "metric-lab-checkpoint", "call": print}, path)
    net_, _, problem = submitted_checkpoint(path)
    assert net_ is None and problem and words in problem, problem
    assert str(tmp_path) not in problem and "Traceback" not in problem and "WeightsUnpickler" not in problem
    results = grade_checkpoint(tmp_path)
    assert all(r.earned == 0 for r in results.values()), {c: r.message for c, r in results.items()}
    assert all(words in r.message for r in results.values())


@pytest.mark.parametrize("breakage, words", [
    ("nan", "cannot be measured: its features of the fixed MNIST test set contain NaN or infinite values"),
    ("dead", "cannot be measured: 1000 of the 1000 images of the fixed MNIST test set get an all-zero feature vector"),
])
def test_the_checkpoint_map_checks_say_why_features_cannot_be_ranked(tmp_path, require_mnist, breakage, words):
    # a diverged or collapsed triplet_net.pt loses the mAP points with a reason, not an evaluator error
    net = ConvNet()
    with torch.no_grad():
        if breakage == "nan":
            net[0].weight[0, 0, 0, 0] = float("nan")
        else:
            net[6].weight.zero_()
            net[6].bias.fill_(-1.0)  # the last ReLU outputs zero for every image
    save_checkpoint(tmp_path / "triplet_net.pt", net, dataset="MNIST", loss="triplet", seed=0, epochs=1,
                    history={"loss": [0.5]})  # one loss per epoch: a history the mAP checks accept
    checks = checks_for("lab2_triplet", "checkpoint", hidden=True)
    assert len(checks) >= 2
    results = evaluate(checks, Context("lab2_triplet", files=tmp_path), lambda calls: [])
    for result in results:
        assert result.earned == 0.0 and words in result.message and not result.grader_error, result
