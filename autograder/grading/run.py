"""Grading one submission: its nbgrader run and its trusted checks, in a course copy of its own.

:func:`prepare_base` makes the class's private course copy (the assignment generated, so its
gradebook knows the cells); :func:`grade_one` copies it for one submission (so that parallel
sqlite writes never meet) and there runs ``nbgrader autograde`` and ``generate_feedback`` (a forked
child, :mod:`autograder.grading.nbrun`, configured by :func:`nbgrader_config`) while it runs the
trusted checks in the sandboxed engine. Grades come from the trusted checks only: TrustedGrades
waits for their results file and puts them in the test cells, the notebook is executed for the
feedback page.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
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


def nbgrader_config(results: Path, time_limit: float, sandboxed: bool, masked: list[Path]) -> Config:
    """The grader's settings of one submission's nbgrader run (over the course's ``nbgrader_config.py``).

    ``results``: the trusted results file TrustedGrades waits for; ``time_limit``: the submission's
    seconds, of which the notebook gets 70 % and each cell a quarter (15 to 120 s); ``sandboxed``:
    the kernel in bubblewrap; ``masked``: files hidden from the kernel."""
    c = Config()
    c.Autograde.autograde_preprocessors = list(AUTOGRADE_PREPROCESSORS)
    c.Execute.timeout = int(min(120, max(15, time_limit / 4)))
    c.Execute.interrupt_on_timeout = True
    c.Execute.raise_on_iopub_timeout = False
    c.RobustExecute.total_seconds = max(20, int(time_limit * 0.7))
    c.RobustExecute.sandbox = sandboxed
    c.TrustedResults.results_file = str(results)
    c.SandboxedKernelManager.masked = [str(p) for p in masked]
    return c


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
    from autograder.grading.trusted import _unreadable, default_limits, grade_notebook_dict, hidden_deliverables
    from labtools.checks.submission import SubmissionError, _read_notebook

    started = time.monotonic()
    out, base = Path(out), Path(base)
    work = Path(tempfile.mkdtemp(prefix=f"grade-{student}-", dir=out / "work"))
    course = work / "course"
    shutil.copytree(base, course, ignore=shutil.ignore_patterns("release"))
    submitted = course / "submitted" / student / lab
    results_path, log = work / "trusted.json", work / "nbgrader.log"
    child, nb = None, None
    if notebook:
        notes = notes + copy_submission(Path(folder), submitted, Path(notebook), f"{lab}.ipynb")
        try:
            nb = _read_notebook(submitted / f"{lab}.ipynb")  # as submitted, before the repair below
        except SubmissionError as error:
            results = _unreadable(lab, submitted, str(error))
    else:
        submitted.mkdir(parents=True)
        if Path(folder).is_dir():
            notes = notes + copy_submission(Path(folder), submitted)
        results = _unreadable(lab, submitted, notes[-1] if notes else "no notebook")
    if nb is not None:
        # nbgrader gets the notebook with its nbgrader metadata repaired
        notes = notes + repair_notebook(submitted / f"{lab}.ipynb", base / "release" / lab / f"{lab}.ipynb")
        config = nbgrader_config(results_path, time_limit, sandboxed, hidden_deliverables())
        env = tool_env(LABTOOLS_FAST="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
        child = nbrun.start_forked([lab, student], course, env, log, config)
        results = grade_notebook_dict(nb, lab, submitted, limits=default_limits(sandboxed), workroot=work)
    results["notes"] = ([] if sandboxed else [NOT_SANDBOXED]) + notes + results.get("notes", [])
    results["sandboxed"] = sandboxed
    results_path.with_suffix(".tmp").write_text(json.dumps(results))
    os.replace(results_path.with_suffix(".tmp"), results_path)  # nbgrader reads it once it exists
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
