"""Lab 4's graded ``similarity_maps`` (its reference, autograder.labs.lab4_beyond.reference): shapes,
known cases, the kit's networks, bad input refused; labtools.explain's tests share its helpers."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from autograder.labs.lab4_beyond.reference import similarity_maps
from labtools.data import digits_dataset
from labtools.dvml import DVML
from labtools.explain import grad_cam
from labtools.models import ConvNet, EmbeddingNet, load_checkpoint

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/: test_explain's helpers
from test_explain import RegionNet, assert_maps, mass_in, region  # noqa: E402


@pytest.fixture(scope="module")
def images():
    return digits_dataset().tensors[0][:6]  # [6, 1, 28, 28]


@pytest.mark.parametrize("corner", ["top_left", "bottom_right"])
def test_the_maps_of_a_net_that_sees_one_quadrant_lie_in_that_quadrant(corner):
    torch.manual_seed(1)
    query, retrieved = torch.rand(5, 1, 28, 28), torch.rand(5, 1, 28, 28)
    seen = F.max_pool2d(region(corner)[None, None], 3, stride=1, padding=1)[0, 0]  # one pixel of the 3 x 3 reach
    for maps in similarity_maps(RegionNet(corner), query, retrieved):
        assert_maps(maps, 5)
        assert (mass_in(maps, seen) == 1).all()  # all of it: none elsewhere


def test_a_pair_of_one_image_has_one_map_and_swapping_the_pair_swaps_the_maps(images):
    net, _ = load_checkpoint("models/mnist_classifier.pt")
    query, retrieved = similarity_maps(net, images, images)
    torch.testing.assert_close(query, retrieved)
    forth, back = similarity_maps(net, images, images.flip(0)), similarity_maps(net, images.flip(0), images)
    torch.testing.assert_close(forth[0], back[1])
    torch.testing.assert_close(forth[1], back[0])


def test_the_weighting_is_grad_cams_with_the_similarity_as_the_score(images):
    """For one pair, the query's map is Grad-CAM's of a classifier whose one score is the cosine with
    the (fixed) embedding of the retrieved image."""
    net, _ = load_checkpoint("models/mnist_classifier.pt")
    query, retrieved = images[:1], images[3:4]
    with torch.no_grad():
        target = F.normalize(net.eval().features(retrieved), dim=1)  # [1, D]

    class Cosine(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return F.normalize(self.net.features(x), dim=1) @ target.T  # [B, 1]

    torch.testing.assert_close(similarity_maps(net, query, retrieved)[0], grad_cam(Cosine(), query, 0))


def test_convnet_maps_leave_the_net_as_it_was_and_need_no_parameter_gradient(images):
    net = load_checkpoint("models/mnist_classifier.pt")[0].train()
    for maps in similarity_maps(net, images, images.flip(0)):
        assert_maps(maps)
    assert net.training and all(p.grad is None for p in net.parameters())
    net.requires_grad_(False)
    with torch.no_grad():  # gradients are enabled inside, whatever the caller's mode
        for maps in similarity_maps(net, images, images.flip(0)):
            assert_maps(maps)


def test_a_pair_does_not_depend_on_the_rest_of_the_batch(images):
    net, _ = load_checkpoint("models/mnist_classifier.pt")
    query, retrieved = similarity_maps(net, images, images.flip(0))
    alone = similarity_maps(net, images[1:2], images.flip(0)[1:2])
    torch.testing.assert_close(query[1:2], alone[0])
    torch.testing.assert_close(retrieved[1:2], alone[1])


@pytest.mark.parametrize("name", ["norm_softmax", "proxy_nca", "arcface", "subcenter_arcface", "epshn_triplet"])
def test_lab4_networks(images, name):
    net, _ = load_checkpoint(f"models/lab4/mnist_{name}_heldout.pt")
    assert isinstance(net, EmbeddingNet)
    for maps in similarity_maps(net, images, images.flip(0)):
        assert_maps(maps)


def test_the_lab5_network(images):
    dvml, _ = load_checkpoint("models/lab5/fashion_dvml_two_phase_a_heldout.pt")
    assert isinstance(dvml, DVML)
    for maps in similarity_maps(dvml, images[:4], images[:4].flip(0)):
        assert_maps(maps, 4)


@pytest.mark.parametrize("call, error, words", [
    (lambda net, x: similarity_maps(net, x, x[:3]), ValueError,
     r"query and retrieved must have the same shape \[B, 1, H, W\] \(one retrieved image per query\), "
     r"got \[6, 1, 28, 28\] and \[3, 1, 28, 28\]"),
    (lambda net, x: similarity_maps(net, x, x[:, 0]), ValueError, r"retrieved must have shape \[B, 1, H, W\]"),
    (lambda net, x: similarity_maps(net, x.numpy(), x), TypeError, "query must be a torch.Tensor of shape"),
    (lambda net, x: similarity_maps(net, x, x / 0), ValueError, "retrieved contain NaN or infinite values"),
    (lambda net, x: similarity_maps(nn.Sequential(nn.Conv2d(1, 2, 3)), x, x), ValueError,
     "Sequential has no features method: similarity_maps explains an embedding"),
])
def test_bad_input_is_refused_in_the_users_terms(images, call, error, words):
    with pytest.raises(error, match=words):
        call(ConvNet(), images)
