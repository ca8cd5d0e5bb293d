"""Lab 3's hidden checks: smooth_ap_loss against the reference."""

from __future__ import annotations

import random

import torch

from autograder.grading.hidden import HiddenValues, register_values, same_loss
from autograder.grading.inputs import clustered_rows

LAB = "lab3_smoothap"


def smooth_ap_fixed():
    """An unbalanced batch with a singleton class (a query without positives)."""
    labels = torch.tensor([0] * 8 + [1] * 6 + [2] * 6 + [3] * 6 + [4])
    return [clustered_rows(labels % 3, 8, 0.6, 27, duplicates=3), labels], {"tau": 0.05}


def smooth_ap_random(rng: random.Random):
    """Balanced batches (P classes x K images, shuffled) as in training."""
    seed = rng.randrange(1 << 30)
    g = torch.Generator().manual_seed(seed)
    classes, per_class = rng.randint(2, 6), rng.randint(2, 6)
    labels = torch.arange(classes).repeat_interleave(per_class)
    labels = labels[torch.randperm(len(labels), generator=g)]
    groups = labels % rng.randint(1, max(1, classes - 1))  # several classes share a group: they overlap
    rows = clustered_rows(groups, rng.choice([8, 16]), rng.uniform(0.4, 1.2), seed,
                          duplicates=rng.randint(0, len(labels) // 4))
    return [rows, labels], {"tau": rng.choice([0.01, 0.05, 0.1])}


VALUES = (HiddenValues("smooth_ap_loss", (0.5, 0.5), smooth_ap_fixed, same_loss("smooth_ap_loss"), smooth_ap_random),)
register_values(LAB, VALUES)
