import torch


def triplet_loss(features, labels, alpha=0.5, num_anchors=10):
    # The margin alpha left out of the hinge: max(d(a, p) - d(a, n), 0).
    a = min(num_anchors, len(labels))
    dist = distances(features[:a], features)  # noqa: F821  (the notebook's Lab 1 function)
    same = labels[:a, None] == labels[None, :]
    eye = torch.arange(len(labels))[None, :] == torch.arange(a)[:, None]
    valid = (same & ~eye)[:, :, None] & (~same)[:, None, :]
    return ((dist[:, :, None] - dist[:, None, :]).clamp_min(0.0) * valid).sum()
