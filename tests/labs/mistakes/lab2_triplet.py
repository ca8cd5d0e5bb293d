"""Lab 2's typical mistakes, and the checks each must lose (see ``Mistake`` in tests/submissions/build.py).

A mistake in triplet_loss also costs the checks of train_triplets, which trains with it, that see it.
"""

from build import Mistake

TRIPLET_VALUES = {f"triplet_loss.{c}" for c in ("hand_example", "hinge_sign", "hidden_fixed", "hidden_random")}

MISTAKES = {
    # max(d(a, n) - d(a, p) + alpha, 0): training pushes the positives away
    "hinge_sign": Mistake(
        lost=TRIPLET_VALUES | {"triplet_loss.zero_when_separated", "train_triplets.hidden_lowers_loss"},
        rewrite="""\
import torch
def triplet_loss(features, labels, alpha=0.5, num_anchors=10):
    a = min(num_anchors, len(labels))
    dist = distances(features[:a], features)
    same = labels[:a, None] == labels[None, :]
    eye = torch.arange(len(labels))[None, :] == torch.arange(a)[:, None]
    valid = (same & ~eye)[:, :, None] & (~same)[:, None, :]
    return ((dist[:, None, :] - dist[:, :, None] + alpha).clamp_min(0.0) * valid).sum()
"""),
    "triplet_anchor_positive": Mistake(
        lost=TRIPLET_VALUES,
        rewrite="""\
import torch


def triplet_loss(features, labels, alpha=0.5, num_anchors=10):
    # The anchor counted as its own positive: d(a, a) = 0 adds max(alpha - d(a, n), 0) for every
    # negative n within alpha of the anchor (nothing on rows where no negative is that close).
    a = min(num_anchors, len(labels))
    dist = distances(features[:a], features)  # noqa: F821  (the notebook's Lab 1 function)
    same = labels[:a, None] == labels[None, :]
    valid = same[:, :, None] & ~same[:, None, :]
    return ((dist[:, :, None] - dist[:, None, :] + alpha).clamp_min(0.0) * valid).sum()
"""),
    "triplet_margin_ignored": Mistake(
        lost=TRIPLET_VALUES | {"train_triplets.loss_decreases", "train_triplets.hidden_lowers_loss"},
        rewrite="""\
import torch


def triplet_loss(features, labels, alpha=0.5, num_anchors=10):
    # The margin alpha left out of the hinge: max(d(a, p) - d(a, n), 0).
    a = min(num_anchors, len(labels))
    dist = distances(features[:a], features)  # noqa: F821  (the notebook's Lab 1 function)
    same = labels[:a, None] == labels[None, :]
    eye = torch.arange(len(labels))[None, :] == torch.arange(a)[:, None]
    valid = (same & ~eye)[:, :, None] & (~same)[:, None, :]
    return ((dist[:, :, None] - dist[:, None, :]).clamp_min(0.0) * valid).sum()
"""),
}
