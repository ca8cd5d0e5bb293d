"""Checks, the calls they need, and what came back.

A :class:`Check` is a named, pointed test of one graded function. ``prepare()`` returns the
inputs it needs as :class:`Call` objects (run in the sandboxed worker, or in-process by
``run_public_checks``) and a state; ``judge(outcomes, state, ctx)`` turns what came back into
``(passed, message)``. Checks earn all their points or none; a test cell's points are the sum of
its checks'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from labtools.labs import lab

__all__ = ["Check", "Call", "Outcome", "Context", "CheckResult", "register", "checks_for"]


@dataclass
class Call:
    """One call of a student function: plain arguments or ``{"__spec__": ...}`` dicts.

    ``key`` lets checks share a call (it runs once); ``instrument`` counts line events and torch
    calls. ``memory`` measures what torch's CPU allocator hands out during the call (counts
    ``peak_bytes``, ``largest_operand_bytes``, ``python_peak_bytes``: see
    :func:`labtools.checks.worker._call_measured`), with ``backward`` the backward pass of the
    returned loss included (an argument ``{"__spec__": "leaf", "tensor": t}`` requires a gradient).
    ``then`` continues from the result (an object such as a module built by a class):
    ``{"call": [args]}`` calls it, ``{"attr": name}`` reads one of its attributes; the last
    value is the outcome.
    """

    function: str
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    instrument: bool = False
    key: str | None = None
    then: list = field(default_factory=list)
    memory: bool = False
    backward: bool = False

    def as_job(self) -> dict:
        return {"function": self.function, "args": list(self.args), "kwargs": dict(self.kwargs),
                "instrument": bool(self.instrument), "then": list(self.then), "memory": bool(self.memory),
                "backward": bool(self.backward)}


@dataclass
class Outcome:
    """What a call gave: ``ok`` and ``value`` (decoded plain data) or ``error``; ``counts`` when
    instrumented; ``scratch`` the folder it ran in (files it wrote)."""

    ok: bool
    value: Any = None
    error: str = ""
    counts: dict = field(default_factory=dict)
    scratch: Path | None = None
    grader_error: bool = False


@dataclass
class Context:
    """What a judge may look at besides the outcomes: the source (``None`` when unknown) and the
    object passed to ``run_public_checks`` or the submitted files' folder."""

    lab_id: str
    source: str | None = None
    files: Path | None = None
    obj: Any = None


@dataclass
class Check:
    id: str
    lab_id: str
    function: str
    points: float
    description: str
    prepare: Callable[[], tuple[list[Call], Any]] = None
    judge: Callable[[list[Outcome], Any, Context], tuple[bool, str]] = None
    hidden: bool = False
    #: ``"code"`` checks run the student's function; ``"file"`` checks read a submitted file.
    kind: str = "code"


@dataclass
class CheckResult:
    check: Check
    earned: float
    message: str
    #: the grader could not run the check (its data missing, ...): the zero is not the student's
    grader_error: bool = False

    @property
    def passed(self) -> bool:
        return self.earned >= self.check.points - 1e-9

    def line(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        return f"[{mark}] {self.check.id} ({self.earned:g}/{self.check.points:g}): {self.message}"


_REGISTRY: dict[str, Check] = {}


def register(check: Check) -> Check:
    _REGISTRY[check.id] = check
    return check


def checks_for(lab_id: str, function: str | None = None, hidden: bool | None = None) -> list[Check]:
    """Registered checks of a lab (of one function; public or hidden only): the public ones, then
    the hidden ones, each in registration order.

    The lab's public checks are registered when its module ``labtools.labs.<lab id>`` is imported,
    which :func:`labtools.labs.lab` does (a KeyError naming the labs for an unknown ``lab_id``); the
    grader's hidden checks when it imports them, possibly before.
    """
    lab(lab_id)
    found = [c for c in _REGISTRY.values() if c.lab_id == lab_id and (function is None or c.function == function)
             and (hidden is None or c.hidden == hidden)]
    return sorted(found, key=lambda c: c.hidden)
