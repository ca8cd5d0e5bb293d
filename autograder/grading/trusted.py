"""The trusted grade of one submission: public and hidden checks in the sandboxed engine.

:func:`grade_submission` returns the results as a JSON-ready dict::

    {"lab": ..., "notes": [...], "error": "" or why the notebook could not be read,
     "checks": [{"check", "function", "points", "max_points", "message"}, ...],
     "cells": {"test_<function>": {"points", "max_points", "lines": [...]}}}
"""

from __future__ import annotations

import json
from pathlib import Path

from labtools.checks.engine import SandboxLimits, check_source
from labtools.checks.registry import CheckResult, Context, checks_for
from labtools.checks.engine import evaluate
from labtools.checks.submission import SubmissionError, _read_notebook, extract_from_notebook
from labtools.labs import lab as lab_spec

import autograder.grading.hidden  # noqa: F401  (registers the hidden checks)
from autograder.paths import REPO


def default_limits(sandboxed: bool = True) -> SandboxLimits:
    """The grader's limits of a check worker; ``sandboxed``: inside bubblewrap (required), else
    with the worker's own in-process guards only."""
    return SandboxLimits(call_seconds=20, memory_bytes=4 << 30, cpu_seconds=300,
                         deny_read=[str(REPO / "autograder"), str(REPO / "tests")],
                         os_sandbox="required" if sandboxed else "off", masked=[str(p) for p in hidden_deliverables()])


def hidden_deliverables() -> list[Path]:
    """The instructor's copies of graded deliverables in the models folder the grader uses (with the
    files their training leaves beside them): hidden from sandboxed code, which sees that folder."""
    from autograder.release import deliverable_excluded
    from labtools.paths import models_dir

    try:
        models = models_dir()
    except FileNotFoundError:
        return []
    return sorted(p for p in models.rglob("*.pt") if deliverable_excluded(f"models/{p.relative_to(models).as_posix()}"))


def _pack(lab: str, results: list[CheckResult], notes: list[str], error: str = "") -> dict:
    cells = {}
    for function, points in lab_spec(lab).test_points.items():
        mine = [r for r in results if r.check.function == function]
        lines = [f"note: {n}" for n in notes] + [r.line() for r in mine]
        earned = sum(r.earned for r in mine)
        lines.append(f"{function}: {earned:g}/{points:g} points")
        cells[f"test_{function}"] = {"points": round(earned, 6), "max_points": points, "lines": lines}
    return {"lab": lab, "notes": notes, "error": error,
            "checks": [{"check": r.check.id, "function": r.check.function, "points": round(r.earned, 6),
                        "max_points": r.check.points, "message": r.message, "grader_error": r.grader_error}
                       for r in results],
            "cells": cells}


def _all_checks(lab: str):
    return checks_for(lab, hidden=None)


def grade_notebook_dict(nb: dict, lab: str, files: Path, limits: SandboxLimits | None = None, workroot=None) -> dict:
    checks = _all_checks(lab)
    try:
        source, notes = extract_from_notebook(nb, lab)
    except SubmissionError as error:
        return _unreadable(lab, files, str(error))
    results = check_source(source, lab, files=files, limits=limits or default_limits(),
                           extra_checks=[c for c in checks if c.hidden], workroot=workroot)
    return _pack(lab, results, notes)


def _order(lab, results):
    order = list(lab_spec(lab).test_points)
    return sorted(results, key=lambda r: (order.index(r.check.function), r.check.hidden))


def grade_submission(notebook: Path, lab: str, files: Path | None = None, workroot=None,
                     limits: SandboxLimits | None = None) -> dict:
    files = files or notebook.parent
    try:
        nb = _read_notebook(notebook)
    except SubmissionError as error:
        return _unreadable(lab, files, str(error))
    return grade_notebook_dict(nb, lab, files, limits=limits, workroot=workroot)


def _unreadable(lab: str, files: Path, error: str, grader_error: bool = False) -> dict:
    """Results of a submission whose notebook cannot be graded (``grader_error``: the grader's fault)."""
    checks = _all_checks(lab)
    file_results = evaluate([c for c in checks if c.kind == "file"], Context(lab, files=files), lambda c: [])
    ids = {r.check.id for r in file_results}
    results = file_results + [CheckResult(c, 0.0, f"the notebook cannot be graded: {error}", grader_error=grader_error)
                              for c in checks if c.id not in ids]
    return _pack(lab, _order(lab, results), [], error)


def write_results(results: dict, path: Path) -> None:
    path.write_text(json.dumps(results, indent=1))
