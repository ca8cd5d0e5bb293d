"""Losses the labs provide (not graded) for the Lab 4 study, each a mean over the batch.

- :func:`epshn_triplet_loss`: triplets of an easy positive and a semi-hard negative (EPSHN,
  Xuan et al., WACV 2020) in squared Euclidean distance;
- :func:`proxy_nca_loss`: ProxyNCA (Movshovitz-Attias et al., ICCV 2017), one learned proxy per
  class, in the form of pytorch-metric-learning's ``ProxyNCALoss``;
- :func:`subcenter_arcface_loss`: Sub-center ArcFace (Deng et al., ECCV 2020), K learned
  sub-centers per class and an additive angular margin.

Features and class weights are L2-normalized inside; labels are integers 0..C-1.
"""

import math

import torch
from torch.nn import functional as F

from labtools.validate import check_features, check_labels, check_weights

__all__ = ["epshn_triplet_loss", "proxy_nca_loss", "subcenter_arcface_loss"]


def _check(features, labels, weight=None, shape="[C, D]"):
    check_features(features)
    if weight is not None:
        check_weights(weight, features.shape[1], shape=shape)
    check_labels(labels, len(features), num_classes=None if weight is None else len(weight))


def epshn_triplet_loss(features, labels, margin=0.2):
    """Triplet loss on each anchor's easiest positive and its semi-hard negative.

    features: [B, D], labels: [B]. With d the squared Euclidean distance between normalized rows,
    each anchor a takes its easy positive p (the nearest other row of its label) and its
    semi-hard negative n (the nearest row of another label with d(a, n) > d(a, p)); its loss is
    max(d(a, p) - d(a, n) + margin, 0). Returns the mean over the anchors that have both
    (a 0-d tensor; 0 when none has).
    """
    _check(features, labels)
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    x = F.normalize(features, dim=1)
    dist = torch.cdist(x, x).square()  # [B, B]
    same = labels[:, None] == labels[None, :]
    itself = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = dist.masked_fill(~same | itself, math.inf).min(dim=1).values  # [B]
    negative = dist.masked_fill(same | (dist <= positive[:, None]), math.inf).min(dim=1).values  # [B]
    valid = positive.isfinite() & negative.isfinite()
    if not valid.any():
        return (features * 0).sum()
    return (positive - negative + margin).clamp_min(0)[valid].mean()


def proxy_nca_loss(features, labels, proxies, scale=1.0):
    """ProxyNCA: softmax over the proxies of -scale * squared distance, cross-entropy on the true class.

    features: [B, D], labels: [B] in 0..C-1, proxies: [C, D]. With x and p_c normalized,
    loss = -log( exp(-scale ||x - p_y||^2) / sum_c exp(-scale ||x - p_c||^2) ), the true proxy
    included in the sum as in pytorch-metric-learning (the paper leaves it out). Returns the mean.
    """
    _check(features, labels, proxies)
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    dist = torch.cdist(F.normalize(features, dim=1), F.normalize(proxies, dim=1)).square()  # [B, C]
    return F.cross_entropy(-scale * dist, labels)


def subcenter_arcface_loss(features, labels, weight, margin=0.5, scale=64.0):
    """Sub-center ArcFace: a class's cosine is its best sub-center's, the true class gets a margin.

    features: [B, D], labels: [B] in 0..C-1, weight: [C, K, D] (K sub-centers per class);
    margin in radians (0.5 rad = 28.6 degrees). cos_c = max_k <x, w_ck> over normalized rows; the
    true class's logit is scale * cos(theta_y + margin) while theta_y + margin <= pi, else
    scale * (cos_y - margin sin(margin)), which keeps it decreasing in theta_y; the others are
    scale * cos_c. Returns the mean cross-entropy.
    """
    _check(features, labels, weight, "[C, K, D]")
    if not 0 <= margin < math.pi / 2 or not scale > 0:
        raise ValueError(f"margin must be in [0, pi/2) radians and scale positive, got {margin}, {scale}")
    cos = torch.einsum("bd,ckd->bck", F.normalize(features, dim=1), F.normalize(weight, dim=2)).amax(dim=2)  # [B, C]
    true = cos.gather(1, labels[:, None])  # [B, 1]
    sin = (1 - true.square()).clamp_min(0).sqrt()
    shifted = torch.where(true >= -math.cos(margin),  # theta + margin <= pi
                          true * math.cos(margin) - sin * math.sin(margin),  # cos(theta + margin)
                          true - margin * math.sin(margin))
    return F.cross_entropy(scale * cos.scatter(1, labels[:, None], shifted), labels)
