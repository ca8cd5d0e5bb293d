"""The losses provided to Lab 4 (labtools.losses) against pytorch-metric-learning 2.9, weights copied
between the two; the graded ones (NormSoftmax, ArcFace) are tested in tests/labs/test_lab4_beyond.py.

pytorch-metric-learning's conventions, read in its source (losses/*.py, distances/*.py, reducers/*.py):

- every loss averages over the batch (``MeanReducer``), except ``TripletMarginLoss``, whose
  default ``AvgNonZeroReducer`` averages over the triplets with a positive loss only: the test
  passes ``MeanReducer()`` to compare with our mean over all mined anchors;
- class weights are ``W`` [D, C] (a column per class) in ``SubCenterArcFaceLoss``, whose columns
  are class-major (column c*K + k is sub-center k of class c); ours are [C, K, D].
  ``ProxyNCALoss.proxies`` is [C, D];
- embeddings and weights are L2-normalized inside (``normalize_embeddings=True`` by default);
- ``SubCenterArcFaceLoss(margin=28.6, scale=64)``: margin in degrees, ours in radians;
- ``ProxyNCALoss(softmax_scale=1)``: softmax of -softmax_scale * ||x - p||^2 over all proxies, the
  true one included in the denominator (the paper leaves it out), our ``scale``. On unit rows
  -||x - p||^2 = 2 <x, p> - 2, so it is NormSoftmax with temperature 1 / (2 softmax_scale);
- ``BatchEasyHardMiner(pos_strategy="easy", neg_strategy="semihard")``: the nearest positive, then
  the nearest negative farther than it, by default in ``LpDistance()`` (Euclidean, not squared):
  the test passes ``LpDistance(power=2)`` to both the miner and the loss, the lab's distance.
"""

import math

import pytest
import torch

from autograder.labs.lab4_beyond.reference import arcface_loss, norm_softmax_loss
from labtools.losses import epshn_triplet_loss, proxy_nca_loss, subcenter_arcface_loss

pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning import distances, losses, miners, reducers  # noqa: E402

from loss_comparison import C, D, K, batch, same_loss_and_gradients, true_cosines  # noqa: E402


@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_proxy_nca_loss_equals_pytorch_metric_learning(scale):
    features, labels, proxies = batch(3)
    theirs = losses.ProxyNCALoss(C, D, softmax_scale=scale)
    theirs.proxies.data = proxies.clone()  # [C, D], our layout
    same_loss_and_gradients(lambda f, p: proxy_nca_loss(f, labels, p, scale), lambda f: theirs(f, labels),
                            features, proxies, lambda: theirs.proxies.grad)
    assert proxy_nca_loss(features, labels, proxies, scale).item() == pytest.approx(
        norm_softmax_loss(features, labels, proxies, temperature=1 / (2 * scale)).item(), rel=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_subcenter_arcface_loss_equals_pytorch_metric_learning(seed):
    features, labels, _ = batch(seed)
    g = torch.Generator().manual_seed(seed + 10)
    weight = torch.randn(C, K, D, generator=g, dtype=torch.float64)
    # the classes of the first three rows get close sub-centers, the rows their opposite: theta near pi
    weight[labels[:3]] = weight[labels[:3], :1] + 0.05 * torch.randn(3, K, D, generator=g, dtype=torch.float64)
    features[:3] = -weight[labels[:3], 0]
    assert (true_cosines(features, labels, weight) < -math.cos(0.5)).sum() >= 3  # past pi - margin
    theirs = losses.SubCenterArcFaceLoss(num_classes=C, embedding_size=D, sub_centers=K,
                                         margin=math.degrees(0.5), scale=64)
    theirs.W.data = weight.reshape(C * K, D).T.clone()  # [D, C*K], class-major columns
    same_loss_and_gradients(lambda f, w: subcenter_arcface_loss(f, labels, w), lambda f: theirs(f, labels),
                            features, weight, lambda: theirs.W.grad.T.reshape(C, K, D))
    sub_center_major = weight.transpose(0, 1).reshape(C * K, D).T.clone()  # a wrong layout
    theirs.W.data = sub_center_major
    assert abs(subcenter_arcface_loss(features, labels, weight).item() - theirs(features, labels).item()) > 1e-3
    one = weight[:, :1]  # one sub-center per class is ArcFace
    assert subcenter_arcface_loss(features, labels, one).item() == pytest.approx(
        arcface_loss(features, labels, one[:, 0]).item(), rel=1e-10)


@pytest.mark.parametrize("margin", [0.05, 0.2])
@pytest.mark.parametrize("seed", [0, 1])
def test_epshn_triplet_loss_equals_pytorch_metric_learning(margin, seed):
    features, labels, _ = batch(seed)
    squared = distances.LpDistance(power=2)
    miner = miners.BatchEasyHardMiner(pos_strategy="easy", neg_strategy="semihard", distance=squared)
    theirs = losses.TripletMarginLoss(margin=margin, distance=squared, reducer=reducers.MeanReducer())
    f1, f2 = features.clone().requires_grad_(), features.clone().requires_grad_()
    ours, reference = epshn_triplet_loss(f1, labels, margin), theirs(f2, labels, miner(f2, labels))
    ours.backward()
    reference.backward()
    assert ours.item() == pytest.approx(reference.item(), rel=1e-10)
    assert torch.isfinite(f1.grad).all() and torch.allclose(f1.grad, f2.grad, atol=1e-10)


def test_the_default_triplet_reducer_of_pytorch_metric_learning_differs():
    """At margin 0.05 about half of the 48 mined triplets of this batch are already satisfied:
    AvgNonZeroReducer leaves them out of the mean, which our check tells apart."""
    features, labels, _ = batch(0)
    squared = distances.LpDistance(power=2)
    mined = miners.BatchEasyHardMiner(pos_strategy="easy", neg_strategy="semihard", distance=squared)(features, labels)
    default = losses.TripletMarginLoss(margin=0.05, distance=squared)(features, labels, mined)
    assert default.item() > 1.5 * epshn_triplet_loss(features, labels, 0.05).item()


def test_epshn_triplet_loss_without_a_triplet_is_zero_with_a_gradient():
    features = torch.randn(4, D, dtype=torch.float64, requires_grad=True)
    loss = epshn_triplet_loss(features, torch.arange(4))  # no positives
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(features.grad, torch.zeros_like(features))


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda f, y, w: proxy_nca_loss(f, y, w, scale=0), "scale must be positive"),
        (lambda f, y, w: proxy_nca_loss(f, y.double(), w), "labels must be an integer"),
        (lambda f, y, w: subcenter_arcface_loss(f, y, w), "float \\[C, K, D\\] tensor"),
        (lambda f, y, w: subcenter_arcface_loss(f, y, w[:, None], margin=-0.1), "margin must be"),
        (lambda f, y, w: epshn_triplet_loss(f * float("nan"), y), "features contain NaN"),
        (lambda f, y, w: epshn_triplet_loss(f, y, margin=-1), "margin must be >= 0"),
    ],
)
def test_wrong_inputs_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call(*batch())
