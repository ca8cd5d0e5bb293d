"""Input checks shared by the neighbour search, the provided losses and metrics, and the references.

Each raises a ValueError that names the argument and what is wrong with it.
"""

import numbers

import torch

__all__ = ["check_features", "check_labels", "check_weights", "check_pair", "check_positive_int", "check_images"]


def check_features(features, name="features", unit=False):
    """Check that ``features`` is a float [N, D] tensor, N >= 1, D >= 1, of finite values.

    unit=True also asks for L2-normalized rows (norms within 1e-3 of 1).
    """
    if not isinstance(features, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor, got {type(features).__name__}")
    if features.ndim != 2 or 0 in features.shape:
        raise ValueError(f"{name} must have shape [N, D] with N, D >= 1, got {list(features.shape)}")
    if not features.is_floating_point():
        raise ValueError(f"{name} must be a float tensor, got {features.dtype}")
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    if unit:
        norms = features.norm(dim=1)
        if ((norms - 1).abs() > 1e-3).any():
            raise ValueError(f"{name} must have L2-normalized rows, norms range {norms.min():.4g}..{norms.max():.4g}")


def check_labels(labels, n, name="labels", num_classes=None):
    """Check that ``labels`` is an integer [n] tensor; with ``num_classes``, of values in 0..num_classes-1."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor, got {type(labels).__name__}")
    if labels.shape != (n,) or labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer [{n}] tensor, got {labels.dtype} {list(labels.shape)}")
    if num_classes is not None and n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{name} must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")


def check_weights(weight, dim, name="weight", shape="[C, D]"):
    """Check that ``weight`` is a float tensor of the given shape (a string such as "[C, K, D]") whose
    last size is ``dim``, the features' D, with C >= 1."""
    if not (isinstance(weight, torch.Tensor) and weight.is_floating_point() and weight.ndim == shape.count(",") + 1
            and weight.shape[-1] == dim and 0 not in weight.shape):
        got = f"{weight.dtype} {list(weight.shape)}" if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"{name} must be a float {shape} tensor with D = {dim}, got {got}")


def check_pair(first, second, first_name, second_name):
    """Check that both are float [N, D] tensors of finite values (:func:`check_features`) of one shape."""
    check_features(first, first_name)
    check_features(second, second_name)
    if first.shape != second.shape:
        raise ValueError(f"{first_name} and {second_name} must have the same shape, "
                         f"got {list(first.shape)} and {list(second.shape)}")


def check_positive_int(value, name):
    """Check that ``value`` is an integer >= 1 (a Python or NumPy integer, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_images(images, name="images"):
    """Check that ``images`` is a float ``[B, 1, H, W]`` tensor (greyscale), B >= 1, of finite values."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [B, 1, H, W], got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 1 or 0 in images.shape:
        raise ValueError(f"{name} must have shape [B, 1, H, W] with B >= 1 (greyscale images), "
                         f"got {list(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {images.dtype}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contain NaN or infinite values")
