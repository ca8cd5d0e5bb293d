"""What a network looks at: Grad-CAM and vanilla gradients of a class score.

Each function takes images ``[B, 1, H, W]`` (28 x 28 in the labs) and returns maps ``[B, H, W]``:
float32, non-negative and finite, on the CPU, one per image. They run on the network's device, in
eval mode (its training flag is restored), and leave the gradients of its parameters untouched.

- :func:`grad_cam` (Selvaraju et al., ICCV 2017): the last convolutional maps ``A [B, K, h, w]``
  (the output of the last :class:`torch.nn.Conv2d`, :func:`last_conv`) weighted by the mean
  gradient of a class score over each map, ``ReLU(sum_k mean_ij(dS/dA_kij) A_k)``, upsampled
  bilinearly from h x w (3 x 3 for the lab's ConvNet) to H x W.
- :func:`vanilla_gradients` (Simonyan et al., 2014): ``|dS/dx|``, the absolute gradient of a class
  score with respect to each pixel, at full resolution.

The class score S of :func:`grad_cam` and :func:`vanilla_gradients` (:func:`class_scores`) is a
classifier's output ``net(images)[b, c]`` (the lab's ConvNet) or, for a network with class vectors
``net.weight`` (Lab 4's NormSoftmax, ProxyNCA, ArcFace and Sub-center ArcFace networks), the cosine
between the embedding ``net.features(images)`` and the class vector (the best sub-center's). A
network with neither (EPSHN triplets, DVML) is explained through the similarity of a pair of images:
Grad-CAM's weighting with S the cosine similarity of their embeddings, one map for each side, which
the students write in Lab 4 (``similarity_maps``).
"""

from __future__ import annotations

import contextlib
import inspect
import numbers

import torch
from torch import nn
from torch.nn import functional as F

from labtools.validate import check_images

__all__ = ["grad_cam", "vanilla_gradients", "class_scores", "last_conv", "recorded_outputs"]


def last_conv(net: nn.Module) -> nn.Conv2d:
    """The last :class:`torch.nn.Conv2d` of ``net`` in ``net.modules()`` order (for the kit's networks,
    the last one applied: the ConvNet's third, also inside an EmbeddingNet or a DVML network).

    Raises ValueError when ``net`` has none.
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    convs = [module for module in net.modules() if isinstance(module, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(net).__name__} has no nn.Conv2d layer: Grad-CAM and similarity maps weight the "
                         "maps of the last convolution (vanilla_gradients needs none)")
    return convs[-1]


def class_scores(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Class scores ``[B, C]`` of images ``[B, 1, H, W]``: the cosine of ``net.features(images)`` and
    each class vector of ``net.weight`` (``[C, D]``; ``[C, K, D]``: the best of the K sub-centers),
    or else the classifier's ``net(images)``. Raises ValueError for a network with neither.
    """
    weight = getattr(net, "weight", None)
    if isinstance(weight, torch.Tensor) and callable(getattr(net, "features", None)):
        features = F.normalize(net.features(images), dim=1)  # [B, D]
        if weight.ndim not in (2, 3) or weight.shape[-1] != features.shape[1]:
            raise ValueError(f"net.weight must hold class vectors [C, {features.shape[1]}] or sub-centers "
                             f"[C, K, {features.shape[1]}], got {list(weight.shape)}")
        cosine = torch.einsum("bd,...d->b...", features, F.normalize(weight, dim=-1))  # [B, C] or [B, C, K]
        return cosine if weight.ndim == 2 else cosine.amax(dim=2)
    try:
        takes_images = type(net).forward is not nn.Module.forward and inspect.signature(net.forward).bind(images)
    except TypeError:
        takes_images = False
    if not takes_images:
        raise ValueError(f"{type(net).__name__} gives no class scores: grad_cam and vanilla_gradients explain a "
                         "classifier (net(images) -> [B, C], the lab's ConvNet) or a network with class vectors "
                         "(net.weight, as Lab 4's networks but the triplet one have); explain an embedding "
                         "with similarity maps (Lab 4's similarity_maps)")
    scores = net(images)
    if not isinstance(scores, torch.Tensor) or scores.ndim != 2 or len(scores) != len(images):
        shape = list(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"net(images) must return class scores [B={len(images)}, C], got {shape}")
    return scores


def _targets(target, count: int, num_classes: int, device) -> torch.Tensor:
    """``target`` (a class id, or an integer tensor of ``count`` class ids) as an int64 tensor [count]."""
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        target = torch.full((count,), int(target))
    elif not (isinstance(target, torch.Tensor) and target.shape == (count,) and not target.is_floating_point()
              and target.dtype != torch.bool):
        raise ValueError(f"target must be a class id or an integer tensor of B={count} class ids, got "
                         f"{f'{target.dtype} {list(target.shape)}' if isinstance(target, torch.Tensor) else repr(target)}")
    if (target < 0).any() or (target >= num_classes).any():
        raise ValueError(f"target must hold class ids in 0..{num_classes - 1} (the network's {num_classes} classes), "
                         f"got {target.min().item()}..{target.max().item()}")
    return target.to(device=device, dtype=torch.int64)


@contextlib.contextmanager
def _explaining(net: nn.Module, *images: torch.Tensor):
    """Yield copies of ``images`` on the network's device that require grad, with ``net`` in eval mode
    and gradients enabled; the training flag is restored afterwards."""
    parameter = next(net.parameters(), None)
    device = parameter.device if parameter is not None else images[0].device
    was_training = net.training
    net.eval()
    try:
        with torch.enable_grad():
            yield tuple(x.detach().to(device).requires_grad_(True) for x in images)
    finally:
        net.train(was_training)


@contextlib.contextmanager
def recorded_outputs(layer: nn.Module):
    """A context manager: within the block, the list of the outputs of ``layer`` (for a convolution,
    its maps ``[B, K, h, w]``), one per forward pass, in the graph (a gradient can be taken with
    respect to them); the hook is removed when the block ends."""
    outputs = []
    handle = layer.register_forward_hook(lambda module, inputs, output: outputs.append(output))
    try:
        yield outputs
    finally:
        handle.remove()


def _weighted(maps: torch.Tensor, gradient: torch.Tensor, size) -> torch.Tensor:
    """Grad-CAM of ``maps`` and their ``gradient`` (``[B, K, h, w]``): ``[B, *size]``, non-negative, on the CPU."""
    weights = gradient.mean(dim=(2, 3), keepdim=True)  # [B, K, 1, 1]
    cam = F.relu((weights * maps).sum(dim=1, keepdim=True))  # [B, 1, h, w]
    return F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0].detach().float().cpu()


def _one_map(outputs: list, layer: nn.Conv2d, net: nn.Module) -> torch.Tensor:
    if len(outputs) != 1:
        raise ValueError(f"the last nn.Conv2d of {type(net).__name__} ({layer}) ran {len(outputs)} times in one "
                         "forward pass, not once: its maps are ambiguous")
    return outputs[0]


def grad_cam(net: nn.Module, images: torch.Tensor, target) -> torch.Tensor:
    """Grad-CAM maps ``[B, H, W]`` of images ``[B, 1, H, W]`` for the class ``target``.

    target: a class id for every image, or an integer tensor ``[B]`` of one class id per image.
    The score explained is :func:`class_scores` (a ConvNet's class score; the cosine with a
    class vector for Lab 4's networks); the maps are those of :func:`last_conv`, weighted as the
    module docstring says, upsampled to H x W: float32, non-negative, on the CPU.
    """
    check_images(images)
    layer = last_conv(net)
    with _explaining(net, images) as (x,), recorded_outputs(layer) as outputs:
        scores = class_scores(net, x)  # [B, C]
        maps = _one_map(outputs, layer, net)
        chosen = scores.gather(1, _targets(target, len(x), scores.shape[1], scores.device)[:, None])
        (gradient,) = torch.autograd.grad(chosen.sum(), maps)
    return _weighted(maps, gradient, images.shape[2:])


def vanilla_gradients(net: nn.Module, images: torch.Tensor, target) -> torch.Tensor:
    """Saliency maps ``[B, H, W]``: the absolute gradient of the class score of ``target`` (as in
    :func:`grad_cam`) with respect to each pixel of images ``[B, 1, H, W]``; float32, on the CPU."""
    check_images(images)
    with _explaining(net, images) as (x,):
        scores = class_scores(net, x)
        chosen = scores.gather(1, _targets(target, len(x), scores.shape[1], scores.device)[:, None])
        (gradient,) = torch.autograd.grad(chosen.sum(), x)
    return gradient[:, 0].abs().detach().float().cpu()
