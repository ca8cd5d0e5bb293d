"""Building checks and their seeded inputs: what the labs' public checks (``labtools/labs/<lab id>.py``)
and the grader's hidden checks share.

:func:`simple_check` registers a check of fixed calls; :func:`vectorized_check` and
:func:`static_loop_check` the checks that a function uses tensor operations, not Python loops.
The inputs are seeded, so that a check makes the same calls every time it runs.
"""

from __future__ import annotations

import math

import torch

from labtools.checks.registry import Call, Check, register
from labtools.checks.submission import loop_violations
from labtools.judges import failed

__all__ = ["simple_check", "vectorized_check", "static_loop_check", "unit_rows", "synthetic_images",
           "points_on_circle", "circle_call"]


def unit_rows(n: int, d: int, seed: int) -> torch.Tensor:
    """``n`` random L2-normalized float32 rows ``[n, d]``, seeded."""
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)


def synthetic_images(n_per_class: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded toy images ``[n, 1, 28, 28]``: a class-specific blob plus noise, and their labels ``[n]``
    (``n = n_per_class * classes``, shuffled)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    labels = labels[torch.randperm(len(labels), generator=g)]
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    centers = torch.rand(classes, 2, generator=g) * 16 + 6
    blobs = torch.exp(-((yy - centers[:, 0, None, None]) ** 2 + (xx - centers[:, 1, None, None]) ** 2) / 18.0)
    images = blobs[labels] + 0.15 * torch.rand(len(labels), 28, 28, generator=g)
    return images.clamp(0, 1).unsqueeze(1), labels


def points_on_circle(*degrees: float) -> torch.Tensor:
    """Unit vectors ``[len(degrees), 2]`` (float64) at the given angles."""
    radians = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([radians.cos(), radians.sin()], dim=1)


def circle_call(function, degrees, labels, **kwargs) -> Call:
    """A call of ``function(points_on_circle(*degrees), torch.tensor(labels), **kwargs)``."""
    return Call(function, [points_on_circle(*degrees), torch.tensor(labels)], kwargs)


def simple_check(id, lab, function, points, description, calls, judge, hidden=False, kind="code"):
    """Register a check whose calls are fixed (``calls`` a function returning them), judged by
    ``judge(outcomes, ctx)``."""
    return register(Check(id=id, lab_id=lab, function=function, points=points, description=description,
                          prepare=lambda: (calls(), None), judge=lambda outcomes, state, ctx: judge(outcomes, ctx),
                          hidden=hidden, kind=kind))


def vectorized_check(lab: str, function: str, points: float, make_call, allowed_for: int = 0, slack: int = 6):
    """Static and dynamic loop checks: no Python loop in the code, and the same number of executed
    lines and torch calls at input size N and 2N (``make_call(scale)`` builds the call)."""

    def judge(outcomes, state, ctx):
        if ctx.source is not None:
            problems = loop_violations(ctx.source, function, allowed_for=allowed_for)
            if problems:
                return False, "use tensor operations instead of Python loops: " + "; ".join(problems[:4])
        failure = failed(outcomes)
        if failure:
            return False, failure
        small, large = outcomes[0].counts, outcomes[1].counts
        if not small or not large:
            return False, "the call could not be measured"
        grew = [f"{kind} {small[kind]} -> {large[kind]}" for kind in ("lines", "ops")
                if large.get(kind, 0) > small.get(kind, 0) + slack]
        if grew:
            return False, ("the work done in Python grows with the input size (N -> 2N: " + ", ".join(grew)
                           + "): use tensor operations instead of loops")
        note = "" if ctx.source is not None else " (dynamic check only: the source was not available)"
        return True, f"no Python loop over the items; executed lines and torch calls constant in N{note}"

    allowed = " (one loop over anchors allowed)" if allowed_for else ""
    return register(Check(id=f"{function}.vectorized", lab_id=lab, function=function, points=points,
                          description=f"{function} uses tensor operations, not Python loops{allowed}",
                          prepare=lambda: ([make_call(1), make_call(2)], None), judge=judge))


def static_loop_check(lab: str, function: str, points: float, allowed_helper: str):
    """No Python loop in ``function`` and its helpers, except in the helper ``allowed_helper``
    (k-means iterates by nature). A static check of the source only."""

    def judge(outcomes, state, ctx):
        if ctx.source is None:
            return False, "the source of the function is not available to check"
        problems = [p for p in loop_violations(ctx.source, function) if not p.endswith(f"(in the helper {allowed_helper})")]
        if problems:
            return False, "use tensor operations instead of Python loops: " + "; ".join(problems[:4])
        return True, f"no Python loop (outside {allowed_helper})"

    return register(Check(id=f"{function}.vectorized", lab_id=lab, function=function, points=points,
                          description=f"{function} uses tensor operations, no Python loop outside {allowed_helper}",
                          prepare=lambda: ([], None), judge=judge))
