"""The labs of the course, each declared once.

A lab is one module of this package, ``labtools/labs/<lab id>.py``: its :class:`LabSpec` (named
``SPEC``) and its public checks. Its instructor side is one folder, ``autograder/labs/<lab id>/``
(reference solution, notebook source, hidden checks, stored reference outputs). Everything else
that needs to know a lab (the points of the notebook's test cells, the functions the submission
parser takes, the release, the sample submissions of the tests) reads the spec: :func:`all_labs`
finds the labs by listing this package, so adding a lab adds no line anywhere else.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Solution", "FileDeliverable", "Report", "LabSpec", "all_labs", "lab", "lab_ids"]


@dataclass(frozen=True)
class Solution:
    """A function (or class) the student writes in a solution cell of the notebook.

    ``points``: the points of its test cell (``test_<name>``), ``None`` for an ungraded one whose
    solution is given (pasted from an earlier lab). ``reference``: the lab whose reference module
    holds it (default: this lab). ``extracted``: the grader takes it from the submission (a graded
    function, or an ungraded one a graded function calls); default: graded ones only.
    """

    name: str
    points: float | None = None
    reference: str | None = None
    extracted: bool | None = None

    @property
    def graded(self) -> bool:
        return self.points is not None

    @property
    def is_extracted(self) -> bool:
        return self.graded if self.extracted is None else self.extracted


@dataclass(frozen=True)
class FileDeliverable:
    """A file the student submits beside the notebook, graded by the test cell ``test_<name>``.

    ``models``: the course's own copies of such a file in ``models/`` (its answer): never released."""

    name: str
    file: str
    points: float
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    """A written answer of the report: the Markdown answer cell ``id`` of the notebook, graded by hand
    (in formgrader) out of ``points``."""

    id: str
    points: float


@dataclass(frozen=True)
class LabSpec:
    """One lab: its id (the notebook's and the assignment's name), its title, its solution cells in
    notebook order, the files it asks for and its report's answer cells in notebook order.

    The lab's points are split between the automatic checks (:attr:`total`, the test cells) and the
    report, graded by hand (:attr:`report_total`); :attr:`max_score` is both.
    """

    id: str
    title: str
    solutions: tuple[Solution, ...]
    files: tuple[FileDeliverable, ...] = ()
    reports: tuple[Report, ...] = ()

    def __post_init__(self):
        names = [s.name for s in self.solutions] + [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.id}: a name is declared twice in {names}")
        ids = [r.id for r in self.reports]
        if len(set(ids)) != len(ids) or any(r.points <= 0 for r in self.reports):
            raise ValueError(f"{self.id}: report cells must have distinct ids and positive points, got {self.reports}")

    @property
    def report_points(self) -> dict[str, float]:
        """``{answer cell id: points}`` of the report, in notebook order."""
        return {r.id: r.points for r in self.reports}

    @property
    def report_total(self) -> float:
        return sum(self.report_points.values())

    @property
    def max_score(self) -> float:
        """The lab's points: the automatic checks' and the report's."""
        return self.total + self.report_total

    @property
    def test_points(self) -> dict[str, float]:
        """``{name: points}`` of every autograded test cell (``test_<name>``), in notebook order."""
        return {**{s.name: s.points for s in self.solutions if s.graded}, **{f.name: f.points for f in self.files}}

    @property
    def total(self) -> float:
        """The points of the automatic checks (the test cells)."""
        return sum(self.test_points.values())

    @property
    def graded(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.solutions if s.graded)

    @property
    def ungraded(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.solutions if not s.graded)

    @property
    def extracted(self) -> tuple[str, ...]:
        """The functions the grader takes from a submission, in notebook order."""
        return tuple(s.name for s in self.solutions if s.is_extracted)

    def solution(self, name: str) -> Solution:
        for s in self.solutions:
            if s.name == name:
                return s
        raise KeyError(f"{self.id} has no solution cell {name!r}")

    @property
    def deliverable_files(self) -> tuple[str, ...]:
        return tuple(f.file for f in self.files)

    @property
    def graded_models(self) -> tuple[str, ...]:
        """``models/`` paths (relative to ``models/``) that hold the answer of a graded deliverable."""
        return tuple(m for f in self.files for m in f.models)


@lru_cache(maxsize=1)
def all_labs() -> dict[str, LabSpec]:
    """``{lab id: spec}`` of every module of this package, sorted by id."""
    found = {}
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.name.startswith("_"):
            continue
        spec = getattr(importlib.import_module(f"{__name__}.{module.name}"), "SPEC", None)
        if not isinstance(spec, LabSpec):
            continue
        if spec.id != module.name:
            raise ValueError(f"labtools/labs/{module.name}.py declares the lab {spec.id!r}: the module must be named after it")
        found[spec.id] = spec
    return found


def lab_ids() -> tuple[str, ...]:
    return tuple(all_labs())


def lab(lab_id: str) -> LabSpec:
    """The spec of ``lab_id``; a KeyError naming the labs there are otherwise."""
    labs = all_labs()
    if lab_id not in labs:
        raise KeyError(f"unknown lab {lab_id!r}; the labs are {', '.join(labs)}")
    return labs[lab_id]
