"""labtools.explain: shapes, non-negative finite maps, known cases, the kit's networks, bad input refused.

Lab 4's graded similarity_maps (its reference) is tested in tests/labs/test_lab4_explain.py, with
the same helpers (:func:`assert_maps`, :class:`RegionNet`)."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from labtools.data import digits_dataset
from labtools.dvml import DVML
from labtools.explain import class_scores, grad_cam, last_conv, recorded_outputs, vanilla_gradients
from labtools.models import ConvNet, EmbeddingNet, load_checkpoint


@pytest.fixture(scope="module")
def digits():
    images, labels = digits_dataset().tensors
    return images[:6], labels[:6]


def assert_maps(maps, count=6, zeros=False):
    """``count`` maps [28, 28], finite and non-negative; not all zero unless ``zeros`` (Grad-CAM of an
    untrained network can be: its weighted maps may all be negative before the ReLU)."""
    assert maps.shape == (count, 28, 28) and maps.dtype == torch.float32 and maps.device.type == "cpu"
    assert torch.isfinite(maps).all() and (maps >= 0).all() and (zeros or maps.sum() > 0)


def region(corner):
    """A [28, 28] mask of the 14 x 14 quadrant ``corner`` ("top_left" or "bottom_right")."""
    mask = torch.zeros(28, 28)
    if corner == "top_left":
        mask[:14, :14] = 1
    else:
        mask[14:, 14:] = 1
    return mask


class RegionNet(nn.Module):
    """A net that sees only one quadrant: the image is masked before its one convolution (3 x 3, no
    bias), so its maps, class scores and embedding depend on that quadrant alone."""

    def __init__(self, corner):
        super().__init__()
        torch.manual_seed(0)
        self.register_buffer("mask", region(corner))
        self.conv = nn.Conv2d(1, 4, kernel_size=3, padding=1, bias=False)
        self.classify = nn.Linear(4 * 28 * 28, 3)

    def features(self, x):
        return F.normalize(F.relu(self.conv(x * self.mask)).flatten(1), dim=1)

    def forward(self, x):
        return self.classify(F.relu(self.conv(x * self.mask)).flatten(1))


def mass_in(maps, mask):
    return (maps * mask).sum(dim=(1, 2)) / maps.sum(dim=(1, 2))


@pytest.mark.parametrize("corner", ["top_left", "bottom_right"])
def test_maps_of_a_net_that_sees_one_quadrant_lie_in_that_quadrant(corner):
    torch.manual_seed(1)
    query, retrieved = torch.rand(5, 1, 28, 28), torch.rand(5, 1, 28, 28)
    net = RegionNet(corner)
    seen = F.max_pool2d(region(corner)[None, None], 3, stride=1, padding=1)[0, 0]  # one pixel of the 3 x 3 reach
    cam = grad_cam(net, query, torch.tensor([0, 1, 2, 0, 1]))
    saliency = vanilla_gradients(net, query, 2)
    for maps in (cam, saliency):
        assert_maps(maps, 5)
        assert (mass_in(maps, seen) == 1).all()  # all of it: none elsewhere


def test_recorded_outputs_are_a_layers_maps_of_each_pass_in_the_graph(digits):
    images, _ = digits
    net, _ = load_checkpoint("models/mnist_classifier.pt")
    layer = last_conv(net)
    with recorded_outputs(layer) as outputs:
        score = net.features(images)[:, 0].sum()
        net.features(images[:2])
    assert [list(o.shape) for o in outputs] == [[6, 64, 3, 3], [2, 64, 3, 3]]
    (gradient,) = torch.autograd.grad(score, outputs[0])  # the maps are in the graph of the pass
    assert gradient.shape == (6, 64, 3, 3) and gradient.abs().sum() > 0
    net.features(images)
    assert len(outputs) == 2 and not layer._forward_hooks  # the hook is gone after the block


def test_vanilla_gradients_of_a_linear_classifier_are_its_weights():
    net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 3))  # no convolution: vanilla gradients need none
    images = torch.rand(4, 1, 28, 28)
    maps = vanilla_gradients(net, images, torch.tensor([0, 2, 2, 1]))
    expected = net[1].weight.detach().abs().view(3, 28, 28)[[0, 2, 2, 1]]
    torch.testing.assert_close(maps, expected)
    with pytest.raises(ValueError, match="Sequential has no nn.Conv2d layer: Grad-CAM and similarity maps weight"):
        grad_cam(net, images, 0)


def test_convnet_maps_have_the_image_shape_and_leave_the_net_as_it_was(digits):
    images, labels = digits
    net = load_checkpoint("models/mnist_classifier.pt")[0].train()
    assert last_conv(net) is net[6]
    for maps in (grad_cam(net, images, labels), grad_cam(net, images, 3), vanilla_gradients(net, images, labels)):
        assert_maps(maps)
    assert net.training and all(p.grad is None for p in net.parameters())
    with torch.no_grad():  # gradients are enabled inside, whatever the caller's mode
        assert_maps(grad_cam(net, images, labels))


def test_a_map_does_not_depend_on_the_rest_of_the_batch(digits):
    images, labels = digits
    net, _ = load_checkpoint("models/mnist_classifier.pt")
    torch.testing.assert_close(grad_cam(net, images, labels)[2:3], grad_cam(net, images[2:3], labels[2:3]))


@pytest.mark.parametrize("name", ["norm_softmax", "proxy_nca", "arcface", "subcenter_arcface", "epshn_triplet"])
def test_lab4_networks_are_explained_through_their_class_vectors(digits, name):
    images, labels = digits
    net, _ = load_checkpoint(f"models/lab4/mnist_{name}_all.pt")
    assert isinstance(net, EmbeddingNet) and last_conv(net) is net.backbone[6]
    if name == "epshn_triplet":  # no class vectors, no class score
        with pytest.raises(ValueError, match="EmbeddingNet gives no class scores: .* explain an embedding with "
                                             "similarity maps"):
            grad_cam(net, images, labels)
        return
    scores = class_scores(net, images)
    assert scores.shape == (6, 10) and (scores.abs() <= 1 + 1e-6).all()  # cosines
    assert_maps(grad_cam(net, images, labels))
    assert_maps(vanilla_gradients(net, images, labels))


@pytest.mark.mnist
def test_class_scores_of_the_lab4_networks_classify_mnist(mnist_test):
    """The cosines with the class vectors are the networks' class scores: their arg-max is the class of
    97.5% to 98.8% of the fixed MNIST test set (measured)."""
    images, labels = mnist_test.tensors
    for name in ["norm_softmax", "proxy_nca", "arcface", "subcenter_arcface"]:
        net, _ = load_checkpoint(f"models/lab4/mnist_{name}_all.pt")
        with torch.no_grad():
            assert (class_scores(net, images).argmax(dim=1) == labels).float().mean() > 0.97, name


def test_a_held_out_lab4_network_and_the_lab5_network():
    images = digits_dataset().tensors[0][:4]
    net, _ = load_checkpoint("models/lab4/mnist_norm_softmax_heldout.pt")  # 5 classes: 0-4
    assert_maps(grad_cam(net, images, 4), 4)
    with pytest.raises(ValueError, match=r"target must hold class ids in 0..4 \(the network's 5 classes\), got 9..9"):
        grad_cam(net, images, 9)
    dvml, _ = load_checkpoint("models/lab5/fashion_dvml_two_phase_a_heldout.pt")
    assert isinstance(dvml, DVML) and last_conv(dvml) is dvml.backbone[6]
    with pytest.raises(ValueError, match="DVML gives no class scores"):
        vanilla_gradients(dvml, images, 0)


@pytest.mark.parametrize("call, error, words", [
    (lambda net, x: grad_cam(net, x[:, 0], 0), ValueError,
     r"images must have shape \[B, 1, H, W\] with B >= 1 \(greyscale images\), got \[6, 28, 28\]"),
    (lambda net, x: grad_cam(net, x[:0], 0), ValueError, r"images must have shape .* got \[0, 1, 28, 28\]"),
    (lambda net, x: vanilla_gradients(net, x.repeat(1, 3, 1, 1), 0), ValueError, r"got \[6, 3, 28, 28\]"),
    (lambda net, x: grad_cam(net, (x * 255).to(torch.uint8), 0), TypeError, "images must be floating point"),
    (lambda net, x: grad_cam(net, x.numpy(), 0), TypeError, "images must be a torch.Tensor of shape"),
    (lambda net, x: grad_cam(net, x / 0, 0), ValueError, "images contain NaN or infinite values"),
    (lambda net, x: grad_cam(net, x, 10), ValueError, r"class ids in 0..9 \(the network's 10 classes\), got 10..10"),
    (lambda net, x: grad_cam(net, x, torch.tensor([1.0] * 6)), ValueError,
     r"target must be a class id or an integer tensor of B=6 class ids, got torch.float32 \[6\]"),
    (lambda net, x: vanilla_gradients(net, x, torch.tensor([1, 2])), ValueError, r"B=6 class ids, got torch.int64 \[2\]"),
    (lambda net, x: grad_cam(net, x, True), ValueError, "target must be a class id .* got True"),
    (lambda net, x: grad_cam("net", x, 0), TypeError, "net must be a torch.nn.Module, got str"),
])
def test_bad_input_is_refused_in_the_users_terms(digits, call, error, words):
    with pytest.raises(error, match=words):
        call(ConvNet(), digits[0])
