"""Hidden checks: the student's functions against ``autograder.labs.<lab>.reference``, instructor side only.

Each lab declares its hidden checks in ``autograder/labs/<lab>/hidden.py``: the value checks of
its graded functions as data, ``VALUES`` (a :class:`HiddenValues` each, registered by
:func:`register_values`, read back by :func:`declarations`), then checks of its own (Lab 1: the
shipped classifier's mAP; Lab 2: training and the submitted checkpoint; Lab 4: the NormSoftmax
head). Importing a lab's module registers its checks (:func:`hidden_checks`); importing this
module imports every lab's.

Fixed inputs come with stored reference outputs (``autograder/labs/<lab>/reference_outputs.pt``,
written by ``python -m autograder.grading.reference_outputs``); fresh random inputs are drawn at
grading time and compared with the reference computed here, in the grader's process. Both are
built so that margins and ties matter (:mod:`autograder.grading.inputs`);
tests/test_hidden_strength.py proves that every typical mistake loses points on them.
"""

from __future__ import annotations

import hashlib
import importlib
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import torch

from labtools.checks.registry import Call, Check, checks_for, register
from labtools.judges import failed, loss_value
from labtools.labs import lab, lab_ids

TOL = 1e-4


@dataclass(frozen=True)
class HiddenValues:
    """The hidden value checks of one graded function: ``<function>.hidden_fixed`` on fixed inputs
    (their reference outputs stored), ``<function>.hidden_random`` on inputs drawn at grading time.

    ``fixed_inputs()`` and ``random_inputs(rng)`` (a :class:`random.Random`; ``None``: no random
    check) return ``(args, kwargs)`` of one call: plain data, tensors or argument specs
    (``{"__spec__": ...}``, see ``labtools.checks.worker.build_arg``). ``compare(value, expected,
    where)`` judges the student's value against the reference's: ``(passed, message)``, the message
    starting with ``where`` (``"fixed inputs"``, ``"random input 2 of 3"``). ``points``: ``(fixed,
    random)``.
    """

    function: str
    points: tuple[float, float]
    fixed_inputs: Callable[[], tuple[list, dict]]
    compare: Callable[[Any, Any, str], tuple[bool, str]]
    random_inputs: Callable[[random.Random], tuple[list, dict]] | None = None

    def __post_init__(self):
        if (self.random_inputs is None) != (not self.points[1]):
            raise ValueError(f"{self.function}: random inputs go with points of a random check, and only with them")


def register_values(lab_id: str, declared: tuple[HiddenValues, ...]) -> None:
    """Register the checks of each declaration of ``lab_id`` (fixed, then random), in order."""
    for values in declared:
        _register(lab_id, values)


def _register(lab_id: str, values: HiddenValues) -> None:
    function, compare = values.function, values.compare
    points_fixed, points_random = values.points

    def fixed_prepare():
        stored = load_outputs(lab_id)[function]
        return [Call(function, stored["args"], stored["kwargs"])], stored["output"]

    def fixed_judge(outcomes, expected, ctx):
        failure = failed(outcomes)
        return (False, failure) if failure else compare(outcomes[0].value, expected, "fixed inputs")

    register(Check(f"{function}.hidden_fixed", lab_id, function, points_fixed,
                   f"{function} matches the reference on fixed inputs", fixed_prepare, fixed_judge, hidden=True))
    if not points_random:
        return

    def random_prepare():
        rng = fresh_random()
        cases = [values.random_inputs(rng) for _ in range(3)]
        calls = [Call(function, args, kwargs) for args, kwargs in cases]
        return calls, [reference_output(function, args, kwargs) for args, kwargs in cases]

    def random_judge(outcomes, expected, ctx):
        failure = failed(outcomes)
        if failure:
            return False, failure
        for i, (outcome, want) in enumerate(zip(outcomes, expected)):
            ok, message = compare(outcome.value, want, f"random input {i + 1} of {len(expected)}")
            if not ok:
                return False, message
        return True, f"matches the reference on {len(expected)} random inputs drawn at grading time (tolerance {TOL:g})"

    register(Check(f"{function}.hidden_random", lab_id, function, points_random,
                   f"{function} matches the reference on random inputs", random_prepare, random_judge, hidden=True))


def fresh_random() -> random.Random:
    """The generator of the inputs drawn at grading time: seeded afresh (tests/test_hidden_strength.py
    seeds it by replacing ``random`` here)."""
    return random.Random()


def same_loss(function: str) -> Callable[[Any, Any, str], tuple[bool, str]]:
    """The comparison of a loss ``function``'s value (a 0-d tensor) with the reference's, to a relative tolerance."""
    def compare(value, expected, where):
        loss, problem = loss_value(value, function)
        if problem:
            return False, f"{where}: {problem}"
        want = float(expected)
        if abs(loss - want) > TOL * max(1.0, abs(want)):
            return False, f"{where}: loss {loss:.5f} vs reference {want:.5f} (relative tolerance {TOL:g})"
        return True, f"{where}: matches the reference ({want:.4f}, relative tolerance {TOL:g})"
    return compare


def hidden_module(lab_id: str) -> ModuleType:
    """``autograder.labs.<lab_id>.hidden``: importing it registers the lab's hidden checks."""
    return importlib.import_module(f"autograder.labs.{lab(lab_id).id}.hidden")


def hidden_checks(lab_id: str, function: str | None = None) -> list[Check]:
    """The hidden checks of ``lab_id`` (of one function), in registration order."""
    hidden_module(lab_id)
    return checks_for(lab_id, function, hidden=True)


def declarations(lab_id: str) -> tuple[HiddenValues, ...]:
    """The value checks ``lab_id`` declares: its hidden module's ``VALUES``."""
    return hidden_module(lab_id).VALUES


def build(spec):
    """The reference side of an argument spec (see ``labtools.checks.worker.build_arg``)."""
    from labtools.checks.worker import build_arg

    return build_arg(spec, "/nonexistent")


def reference_output(function: str, args, kwargs):
    from autograder.labs import reference

    func = next(getattr(m, function) for m in map(reference, lab_ids()) if hasattr(m, function))
    return func(*[build(a) for a in args], **{k: build(v) for k, v in kwargs.items()})


def load_outputs(lab_id: str) -> dict:
    return torch.load(outputs_path(lab_id), weights_only=True)


def outputs_path(lab_id: str) -> Path:
    """The stored reference outputs of ``lab_id``'s hidden checks."""
    from autograder.labs import lab_dir

    return lab_dir(lab_id) / "reference_outputs.pt"


# ----------------------------------------------------------------------------------------------
# A network's mAP on the fixed MNIST test set (Lab 1: the shipped classifier; Lab 2: the submitted checkpoint)


@lru_cache(maxsize=1)
def mnist_test():
    from labtools.data import fixed_test_set

    return fixed_test_set("MNIST", download=False)


@lru_cache(maxsize=16)
def reference_map(path: str, digest: str) -> float:
    """mAP of the first 100 queries of the fixed MNIST test set, by the reference evaluator.

    Raises ValueError saying why when the checkpoint's features cannot be ranked: NaN or infinite
    values, or images whose feature vector is all zero (normalizing leaves it at zero)."""
    from autograder.evaluation import full_ranking_ap
    from labtools.models import extract_features, load_checkpoint

    net, _ = load_checkpoint(path)
    images, labels = mnist_test().tensors
    features = extract_features(net, images, progress=False)
    if not torch.isfinite(features).all():
        raise ValueError("its features of the fixed MNIST test set contain NaN or infinite values "
                         "(did its training diverge?)")
    dead = int((features.norm(dim=1) < 0.5).sum())  # normalize leaves an all-zero embedding at zero
    if dead:
        raise ValueError(f"{dead} of the {len(features)} images of the fixed MNIST test set get an all-zero "
                         f"feature vector (every ReLU output zero: a collapsed network)")
    return full_ranking_ap(features, labels)[:100].mean().item()


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# Last: a lab's module imports the names above (and never another lab's module), whichever module is imported first.
for _lab in lab_ids():
    hidden_module(_lab)
