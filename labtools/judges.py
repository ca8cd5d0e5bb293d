"""Judging what a student's function returned: the comparisons the public and hidden checks share.

A check's judge receives the :class:`~labtools.checks.registry.Outcome` of each of its calls and
returns ``(passed, message)``, the message in the student's terms. The helpers here either read a
value (``(value, None)``, or ``(None, message)`` saying what is wrong with it) or build judges
(:func:`expect_loss`, :func:`all_judged`). Tensors are compared in float64 with an absolute
tolerance only.
"""

from __future__ import annotations

import math

import torch

__all__ = ["failed", "parsed", "close", "describe_tensor", "expect_tensor", "loss_value", "float_value", "expect_loss",
           "all_judged"]


def failed(outcomes) -> str | None:
    """``"the call failed: <error>"`` for the first outcome whose call failed, ``None`` when all succeeded."""
    for outcome in outcomes:
        if not outcome.ok:
            return f"the call failed: {outcome.error}"
    return None


def parsed(outcomes, parse, *args):
    """``parse(value of the first call, *args)``: ``(result, None)``, or ``(None, message)`` when a
    call failed or ``parse`` found the value malformed (the common start of the judges)."""
    failure = failed(outcomes)
    return (None, failure) if failure else parse(outcomes[0].value, *args)


def close(value: torch.Tensor, expected, atol: float) -> bool:
    """``value`` (a tensor of any shape) equals ``expected`` (anything ``torch.as_tensor`` takes, of
    a shape that broadcasts to it) within ``atol``, compared in float64."""
    expected = torch.as_tensor(expected, dtype=torch.float64)
    return bool(torch.allclose(value.to(torch.float64), expected, atol=atol, rtol=0))


def describe_tensor(value) -> str:
    """What ``value`` is, for a message: ``"a torch.float32 tensor of shape [3, 5]"``, or its type."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}" if not hasattr(value, "type_name") else f"a {value.type_name}"


def expect_tensor(value, name: str, shape: list[int] | None = None, floating: bool = True) -> str | None:
    """A message saying what is wrong with ``value`` as the tensor ``name``, or ``None``: it must be a
    tensor of exactly ``shape`` (any shape when ``None``) and, when ``floating``, floating-point and finite."""
    if not isinstance(value, torch.Tensor):
        return f"{name} should be a torch tensor, got {describe_tensor(value)}"
    if shape is not None and list(value.shape) != list(shape):
        return f"{name} should have shape {list(shape)}, got {list(value.shape)}"
    if floating and not value.is_floating_point():
        return f"{name} should be a floating-point tensor, got dtype {value.dtype}"
    if floating and not torch.isfinite(value).all():
        return f"{name} contains NaN or infinite values"
    return None


def loss_value(value, name):
    """``(float, None)`` for a finite floating-point 0-d tensor (a loss that can be back-propagated),
    else ``(None, message)``; ``name`` names it in the message."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.ndim == 0:
        if not value.is_floating_point():
            return None, f"{name} should be a floating-point tensor, got dtype {value.dtype}"
        if not torch.isfinite(value):
            return None, f"{name} is NaN or infinite"
        return float(value), None
    return None, f"{name} should return a 0-d tensor (so that it can be back-propagated), got {describe_tensor(value)}"


def float_value(value, name):
    """``(float, None)`` for a finite Python number or a one-element tensor (any shape), else ``(None, message)``."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value), None
    return None, f"{name} should return a finite float, got {describe_tensor(value)}"


def expect_loss(function: str, expected: float, what: str, hints=()):
    """Judge of one call of the loss ``function`` whose value, a 0-d tensor (:func:`loss_value`),
    should be ``expected`` (within 1e-4).

    ``hints`` are ``(value, advice)`` pairs of known mistakes: a loss within 1e-3 of ``value``
    adds ``advice`` to the message.
    """
    def judge(outcomes, ctx):
        loss, problem = parsed(outcomes, loss_value, function)
        if problem:
            return False, problem
        if abs(loss - expected) > 1e-4:
            advice = next((f" ({text})" for value, text in hints if abs(loss - value) < 1e-3), "")
            return False, f"{what}: expected {expected:.4g}, got {loss:.4f} (tolerance 1e-4){advice}"
        return True, f"{what}: {expected:.4g}"
    return judge


def all_judged(outcomes, ctx, judges):
    """Judge the i-th outcome with the i-th judge: passed when all pass; the first failure's message."""
    messages = []
    for outcome, judge in zip(outcomes, judges):
        passed, message = judge([outcome], ctx)
        if not passed:
            return False, message
        messages.append(message)
    return True, "; ".join(messages)
