import torch


def triplet_loss(features, labels, alpha=0.5, num_anchors=10):
    # The anchor counted as its own positive: d(a, a) = 0 adds max(alpha - d(a, n), 0) for every
    # negative n within alpha of the anchor (nothing on rows where no negative is that close).
    a = min(num_anchors, len(labels))
    dist = distances(features[:a], features)  # noqa: F821  (the notebook's Lab 1 function)
    same = labels[:a, None] == labels[None, :]
    valid = same[:, :, None] & ~same[:, None, :]
    return ((dist[:, :, None] - dist[:, None, :] + alpha).clamp_min(0.0) * valid).sum()
