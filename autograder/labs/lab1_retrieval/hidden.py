"""Lab 1's hidden checks: distances, evaluate_AP and evaluate_mAP against the reference, and the
mAP of the shipped classifier through the student's evaluate_mAP."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from autograder.grading.hidden import (
    TOL, HiddenValues, file_digest, mnist_test, reference_map, register_values,
)
from autograder.grading.inputs import clustered_rows
from autograder.paths import grader_models_dir
from labtools.checks.builders import synthetic_images
from labtools.checks.registry import Call, Check, register
from labtools.judges import expect_tensor, parsed
from labtools.labs.lab1_retrieval import ap_result, map_result

LAB = "lab1_retrieval"


def distances_fixed():
    rows = clustered_rows(torch.arange(26) % 3, 8, 0.5, 23, duplicates=5)
    return [rows[:7], rows[7:]], {}


def distances_random(rng: random.Random):
    seed = rng.randrange(1 << 30)
    g = torch.Generator().manual_seed(seed)
    q, n, d = rng.randint(2, 12), rng.randint(5, 40), rng.choice([8, 16])
    rows = clustered_rows(torch.randint(0, rng.randint(1, 4), (q + n,), generator=g), d, rng.uniform(0.2, 1.2),
                          seed, duplicates=rng.randint(0, (q + n) // 4))
    return [rows[:q], rows[q:]], {}


def distances_compare(value, expected, where):
    problem = expect_tensor(value, "the distance matrix", list(expected.shape))
    if problem:
        return False, f"{where}: {problem}"
    err = (value.double() - expected.double()).abs().max().item()
    if err > TOL:
        return False, f"{where}: distances differ from the reference by up to {err:.2e} (tolerance {TOL:g})"
    return True, f"{where}: matches the reference (max error {err:.1e}, tolerance {TOL:g})"


def ap_fixed():
    """Distances on 8 levels: many ties, which keep their order (a stable sort)."""
    g = torch.Generator().manual_seed(22)
    labels = torch.randint(0, 4, (31,), generator=g)
    labels[:2] = torch.tensor([2, 0])  # the query's label occurs, and another one does too
    return [torch.randint(0, 8, (31,), generator=g) / 8, labels, 2], {}


def ap_random(rng: random.Random):
    """Distances on a few levels."""
    g = torch.Generator().manual_seed(rng.randrange(1 << 30))
    n, levels = rng.randint(10, 60), rng.randint(3, 12)
    labels = torch.randint(0, 4, (n,), generator=g)
    query = rng.randrange(4)
    labels[rng.randrange(n)] = query  # at least one relevant item
    return [torch.randint(0, levels, (n,), generator=g) / levels, labels, query], {}


def ap_compare(value, expected, where):
    parts, problem = ap_result(value, len(expected[1]), "evaluate_AP")
    if problem:
        return False, f"{where}: {problem}"
    for got, want, name in zip(parts, expected, ("ap", "precision", "recall")):
        err = (got.double() - want.double()).abs().max().item()
        if err > TOL:
            return False, f"{where}: {name} differs from the reference by up to {err:.2e} (tolerance {TOL:g})"
    return True, f"{where}: AP, precision and recall match the reference (tolerance {TOL:g})"


def map_fixed():
    images, labels = synthetic_images(12, 4, 21)
    return [{"__spec__": "convnet", "seed": 25}, {"__spec__": "dataset", "images": images, "labels": labels}], {
        "num_queries": 10}


def map_compare(value, expected, where):
    parts, problem = map_result(value, len(expected[1]) + 1)
    if problem:
        return False, f"{where}: {problem}"
    errs = [abs(parts[0] - float(expected[0]))] + [
        (g.double() - w.double()).abs().max().item() for g, w in zip(parts[1:], expected[1:])]
    if max(errs) > TOL:
        return False, (f"{where}: mAP {parts[0]:.4f} vs reference {float(expected[0]):.4f}, curves off by up to "
                       f"{max(errs[1:]):.2e} (tolerance {TOL:g})")
    return True, f"{where}: mAP and PR curve match the reference (tolerance {TOL:g})"


VALUES = (
    HiddenValues("distances", (0.4, 0.4), distances_fixed, distances_compare, distances_random),
    HiddenValues("evaluate_AP", (0.4, 0.4), ap_fixed, ap_compare, ap_random),
    HiddenValues("evaluate_mAP", (0.3, 0.0), map_fixed, map_compare),
)
register_values(LAB, VALUES)


# ----------------------------------------------------------------------------------------------
# The shipped classifier through the student's evaluate_mAP


def classifier_path() -> Path:
    folder = grader_models_dir()
    for name in ("mnist_classifier.pt", "mnist_classifier.train.pt"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no mnist_classifier.pt in {folder}")


def _classifier_prepare():
    path = classifier_path()
    images, labels = mnist_test().tensors
    call = Call("evaluate_mAP", [{"__spec__": "convnet", "checkpoint": str(path)},
                                 {"__spec__": "dataset", "images": images, "labels": labels}], {"num_queries": 100})
    return [call], reference_map(str(path), file_digest(path))


def _classifier_judge(outcomes, expected, ctx):
    parts, problem = parsed(outcomes, map_result, 1000)
    if problem:
        return False, problem
    if abs(parts[0] - expected) > TOL:
        return False, (f"the shipped classifier on the fixed MNIST test set: your mAP {parts[0]:.4f}, reference "
                       f"{expected:.4f} (tolerance {TOL:g})")
    return True, f"the shipped classifier on the fixed MNIST test set: mAP {parts[0]:.4f} as the reference"


register(Check("evaluate_mAP.hidden_classifier", LAB, "evaluate_mAP", 0.5,
               "mAP of the shipped classifier on the fixed MNIST test set equals the reference's",
               _classifier_prepare, _classifier_judge, hidden=True))
