"""Grading one submission: its nbgrader run and its trusted checks, in a course copy of its own.

:func:`prepare_base` makes the class's private course copy (the assignment generated, so its
gradebook knows the cells); :func:`grade_one` copies it for one submission (so that parallel
sqlite writes never meet) and there runs ``nbgrader autograde`` and ``generate_feedback`` (a forked
child, :mod:`autograder.grading.nbrun`, configured by :func:`nbgrader_config`) while it runs the
trusted checks in the sandboxed engine. Grades come from the trusted checks only: TrustedGrades
waits for their results file and puts them in the test cells, the notebook is executed for the
feedback page.

The intake of a submission (:func:`take_in`: its files copied without links, its notebook read as
submitted, then its nbgrader metadata repaired) and its trusted checks (:func:`trusted_results`,
:func:`publish`) are the same code whether :func:`grade_one` runs them or the
:class:`~autograder.grading.preprocessors.TrustedIntake` preprocessor does, inside a plain
``nbgrader autograde`` of the instructor's course (formgrader's Autograde button): its settings are
:func:`course_config`, which the course's ``nbgrader_config.py`` applies (:mod:`autograder.hub.course`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from traitlets.config import Config

from autograder.grading import nbrun
from autograder.grading.intake import copy_submission, repair_notebook
from autograder.grading.report import write_feedback
from autograder.nbgrader_cli import tool_env
from autograder.paths import REPO

#: The note every row of a run without the OS sandbox carries.
NOT_SANDBOXED = "not sandboxed: graded with --no-sandbox, the submission's code ran with the grader's rights"
#: ``nbgrader autograde``'s preprocessors: nbgrader's, with Execute replaced by RobustExecute (the
#: kernel in the OS sandbox) and the test cells' outputs by the trusted results (TrustedGrades).
AUTOGRADE_PREPROCESSORS = (
    "autograder.grading.preprocessors.RobustExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "autograder.grading.preprocessors.TrustedGrades",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
)


#: nbgrader's own sanitizing preprocessors (``Autograde.sanitize_preprocessors``' default), which
#: the course runs after TrustedIntake.
SANITIZE_PREPROCESSORS = (
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
)
#: The seconds of one submission in the instructor's course (as ``python -m autograder grade``'s default).
COURSE_TIME_LIMIT = 600.0


def nbgrader_config(results: Path | str, time_limit: float, sandboxed: bool, masked: list[Path],
                    intake: bool = False) -> Config:
    """The grader's settings of one submission's nbgrader run (over the course's ``nbgrader_config.py``).

    ``results``: the trusted results file TrustedGrades waits for (``{student}``, ``{assignment}``
    and ``{notebook}`` in it name each submission's own); ``time_limit``: the submission's
    seconds, of which the notebook gets 70 % and each cell a quarter (15 to 120 s); ``sandboxed``:
    the kernel (and TrustedIntake's checks) in bubblewrap; ``masked``: files hidden from the kernel;
    ``intake``: TrustedIntake runs first in nbgrader's sanitizing step, taking the submission in and
    running the trusted checks itself (the instructor's course, where no :func:`grade_one` does)."""
    c = Config()
    c.Autograde.autograde_preprocessors = list(AUTOGRADE_PREPROCESSORS)
    if intake:
        c.Autograde.sanitize_preprocessors = ["autograder.grading.preprocessors.TrustedIntake",
                                              *SANITIZE_PREPROCESSORS]
    c.Execute.timeout = int(min(120, max(15, time_limit / 4)))
    c.Execute.interrupt_on_timeout = True
    c.Execute.raise_on_iopub_timeout = False
    c.RobustExecute.total_seconds = max(20, int(time_limit * 0.7))
    c.RobustExecute.sandbox = sandboxed
    c.TrustedIntake.sandbox = sandboxed
    c.TrustedResults.results_file = str(results)
    c.SandboxedKernelManager.masked = [str(p) for p in masked]
    return c


def course_config(root: Path | str) -> Config:
    """The settings of ``nbgrader autograde`` (and formgrader's Autograde) in the course folder ``root``:
    :func:`nbgrader_config` with TrustedIntake, the sandbox always, the trusted results kept as
    ``root/trusted/<student>/<lab>/<notebook>.json``, the hidden deliverables as this process finds them."""
    from autograder.grading.trusted import hidden_deliverables

    results = Path(root) / "trusted" / "{student}" / "{assignment}" / "{notebook}.json"
    return nbgrader_config(results, COURSE_TIME_LIMIT, True, hidden_deliverables(), intake=True)


@dataclass
class Intake:
    """A submission taken in (:func:`take_in`)."""

    #: the notebook as submitted (what the trusted checks read); None when there is none or it is unreadable
    nb: dict | None
    #: the results of a submission that cannot be graded (no notebook, an unreadable one), else None
    results: dict | None
    notes: list[str] = field(default_factory=list)


def take_in(lab: str, folder: Path, notebook: Path | None, submitted: Path, release: Path, notes: list[str],
            name: str = "") -> Intake:
    """Copy a submission's files from ``folder`` into ``submitted`` (without links; ``notebook`` as
    ``name``, default ``<lab>.ipynb``), read the notebook as submitted, then repair its nbgrader
    metadata there against the released notebook ``release`` (nbgrader processes the repaired one)."""
    from autograder.grading.trusted import _unreadable
    from labtools.checks.submission import SubmissionError, _read_notebook

    name = name or f"{lab}.ipynb"
    if notebook is None:
        submitted.mkdir(parents=True, exist_ok=True)
        if folder.is_dir():
            notes = notes + copy_submission(folder, submitted)
        return Intake(None, _unreadable(lab, submitted, notes[-1] if notes else "no notebook"), notes)
    notes = notes + copy_submission(folder, submitted, notebook, name)
    try:
        nb = _read_notebook(submitted / name)  # as submitted, before the repair below
    except SubmissionError as error:
        return Intake(None, _unreadable(lab, submitted, str(error)), notes)
    # nbgrader gets the notebook with its nbgrader metadata repaired
    return Intake(nb, None, notes + repair_notebook(submitted / name, release))


def trusted_results(intake: Intake, lab: str, submitted: Path, work: Path, sandboxed: bool) -> dict:
    """The trusted results of a submission taken in: its checks in the sandboxed engine (the files
    of ``submitted``, scratch under ``work``), with the intake's notes."""
    from autograder.grading.trusted import default_limits, grade_notebook_dict

    if intake.nb is not None:
        results = grade_notebook_dict(intake.nb, lab, submitted, limits=default_limits(sandboxed), workroot=work)
    else:
        results = intake.results
    results["notes"] = ([] if sandboxed else [NOT_SANDBOXED]) + intake.notes + results.get("notes", [])
    results["sandboxed"] = sandboxed
    return results


def publish(results: dict, path: Path) -> None:
    """Write the results file at once (TrustedGrades reads it as soon as it exists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".tmp").write_text(json.dumps(results))
    os.replace(path.with_suffix(".tmp"), path)


def prepare_base(lab: str, course: Path, out: Path) -> Path:
    """A private course copy with the assignment generated (its gradebook knows the cells)."""
    base = out / "course"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    shutil.copy(course / "nbgrader_config.py", base / "nbgrader_config.py")
    shutil.copytree(course / "source" / lab, base / "source" / lab)
    log = out / "generate_assignment.log"
    ended = nbrun.wait_forked(nbrun.start_forked([lab, "--generate"], base, tool_env(PYTHONPATH=str(REPO)), log), 600)
    if ended != "0":
        raise RuntimeError(f"nbgrader generate_assignment failed ({ended}):\n{log.read_text()[-3000:]}")
    return base


def grade_one(lab: str, student: str, folder: str, notebook: str | None, notes: list[str], base: str, out: str,
              time_limit: float, keep_work: bool = False, sandboxed: bool = True) -> dict:
    """Grade one submission in its own course copy; never raises.

    nbgrader (autograde + generate_feedback, a forked child) starts first and runs the notebook
    while this process runs the trusted checks; TrustedGrades waits for their results file.
    """
    from autograder.grading.trusted import hidden_deliverables

    started = time.monotonic()
    out, base = Path(out), Path(base)
    work = Path(tempfile.mkdtemp(prefix=f"grade-{student}-", dir=out / "work"))
    course = work / "course"
    shutil.copytree(base, course, ignore=shutil.ignore_patterns("release"))
    submitted = course / "submitted" / student / lab
    results_path, log = work / "trusted.json", work / "nbgrader.log"
    child = None
    intake = take_in(lab, Path(folder), Path(notebook) if notebook else None, submitted,
                     base / "release" / lab / f"{lab}.ipynb", notes)
    if intake.nb is not None:
        config = nbgrader_config(results_path, time_limit, sandboxed, hidden_deliverables())
        env = tool_env(LABTOOLS_FAST="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
        child = nbrun.start_forked([lab, student], course, env, log, config)
    results = trusted_results(intake, lab, submitted, work, sandboxed)
    publish(results, results_path)  # nbgrader reads it once it exists
    if child is not None:
        ended = nbrun.wait_forked(child, max(30.0, time_limit - (time.monotonic() - started)))
        with open(log, "a") as handle:
            handle.write(f"\n$ nbrun {lab} {student} -> {ended}\n")
    write_feedback(course, out, student, lab, results)
    if not keep_work:
        shutil.rmtree(course, ignore_errors=True)
    results.update(student=student, seconds=time.monotonic() - started, work=str(work))
    return results


def grader_failure(lab: str, student: str, error: Exception, sandboxed: bool) -> dict:
    """The results of a submission whose :func:`grade_one` failed: every check a grader error."""
    from autograder.grading.trusted import _unreadable

    result = _unreadable(lab, Path("/nonexistent"), f"grader error: {type(error).__name__}: {error}",
                         grader_error=True)
    result.update(student=student, seconds=0.0, sandboxed=sandboxed, notes=[] if sandboxed else [NOT_SANDBOXED])
    return result


def start_warming_data() -> subprocess.Popen:
    """Stage and decode the datasets on the trusted side (sandboxed code reads them read-only), in a
    child process: decoding in this one would start torch's OpenMP threads, whose state the pool's
    forked workers inherit broken (their first parallel operation then waits forever)."""
    return subprocess.Popen([sys.executable, "-c", "from labtools.data import warm_cache; warm_cache()"],
                            env=tool_env(PYTHONPATH=str(REPO)), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def wait_for_data(warming: subprocess.Popen) -> None:
    _, errors = warming.communicate()
    if warming.returncode:  # the checks that need the data say so, as grader errors
        last = (errors.strip().splitlines() or ["no message"])[-1]
        print(f"WARNING: the data cache could not be prepared: {last}", file=sys.stderr)
