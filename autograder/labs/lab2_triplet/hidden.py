"""Lab 2's hidden checks: triplet_loss against the reference, train_triplets lowers the reference
loss, and the mAP steps of the submitted ``triplet_net.pt``.

The checkpoint earns its mAP steps only as the lab's ConvNet with a history that matches its epochs
(``labtools.labs.lab2_triplet.submitted_checkpoint``) and when it is no copy of one of the course's
networks (:func:`autograder.labs.lab2_triplet.copies.copied_network`, asked by every check of the
checkpoint).
"""

from __future__ import annotations

import random

import torch

from autograder.grading.hidden import (
    HiddenValues, build, file_digest, reference_map, register_values, same_loss,
)
from autograder.grading.inputs import clustered_batch
from autograder.labs.lab2_triplet.copies import copied_network
from labtools.checks.builders import synthetic_images
from labtools.checks.registry import Check, register
from labtools.judges import failed
from labtools.labs.lab2_triplet import CHECKPOINT_GATES, submitted_checkpoint, train_call

LAB = "lab2_triplet"
MAP_STEPS = ((0.90, 1.0), (0.95, 0.75), (0.98, 0.75))


def triplet_fixed():
    return clustered_batch(24, 8, 3, 5, 0.5, 26, duplicates=4), {"alpha": 0.3, "num_anchors": 7}


def triplet_random(rng: random.Random):
    seed = rng.randrange(1 << 30)
    b, clusters = rng.randint(10, 40), rng.randint(2, 4)
    return clustered_batch(b, rng.choice([8, 16]), clusters, clusters + rng.randint(0, 2),
                           rng.uniform(0.3, 0.8), seed, duplicates=rng.randint(1, b // 5)), {
        "alpha": rng.choice([0.1, 0.2, 0.5, 1.0]), "num_anchors": rng.randint(3, 10)}


VALUES = (HiddenValues("triplet_loss", (0.5, 0.5), triplet_fixed, same_loss("triplet_loss"), triplet_random),)
register_values(LAB, VALUES)


def _train_lowers_prepare():
    return [train_call()], None


def _train_lowers_judge(outcomes, state, ctx):
    failure = failed(outcomes)
    if failure:
        return False, failure
    from autograder.labs.lab2_triplet.reference import triplet_loss
    from labtools.models import load_checkpoint

    try:
        trained, _ = load_checkpoint(outcomes[0].scratch / "check_triplet.pt")
    except Exception as error:
        return False, f"no checkpoint to measure: {error}"
    initial = build({"__spec__": "convnet", "seed": 0})
    images, labels = synthetic_images(10, 4, 11)
    with torch.no_grad():
        before = triplet_loss(initial.eval().features(images), labels, alpha=0.5, num_anchors=40).item()
        after = triplet_loss(trained.eval().features(images), labels, alpha=0.5, num_anchors=40).item()
    if not after < before:
        return False, f"the reference triplet loss of the trained net did not go down ({before:.3f} -> {after:.3f})"
    return True, f"the reference triplet loss of the trained net went down ({before:.3f} -> {after:.3f})"


register(Check("train_triplets.hidden_lowers_loss", LAB, "train_triplets", 0.5,
               "the checkpoint train_triplets wrote has a lower reference triplet loss than the initial net",
               _train_lowers_prepare, _train_lowers_judge, hidden=True))


if copied_network not in CHECKPOINT_GATES:  # asked first by every check of a submitted checkpoint
    CHECKPOINT_GATES.append(copied_network)


def _map_step(threshold: float, points: float):
    def judge(outcomes, state, ctx):
        path = (ctx.files / "triplet_net.pt") if ctx.files else None
        _, _, problem = submitted_checkpoint(path)
        if problem:  # no file, not the lab's ConvNet, a history that contradicts its epochs, a copy
            return False, problem
        try:
            value = reference_map(str(path), file_digest(path))
        except ValueError as error:  # features the evaluator cannot rank
            return False, f"the mAP of triplet_net.pt cannot be measured: {error}"
        verdict = "reaches" if value >= threshold else "is below"
        return value >= threshold, f"mAP of triplet_net.pt (reference evaluator, 100 queries) {value:.4f} {verdict} {threshold:.2f}"

    register(Check(f"checkpoint.hidden_map_{int(round(threshold * 100))}", LAB, "checkpoint", points,
                   f"mAP of the submitted checkpoint >= {threshold:.2f}", lambda: ([], None), judge, hidden=True,
                   kind="file"))


for _threshold, _points in MAP_STEPS:
    _map_step(_threshold, _points)
