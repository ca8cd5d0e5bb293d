"""nbgrader preprocessors of the trusted grading pipeline.

``RobustExecute`` runs the notebook like nbgrader's Execute, in the OS sandbox, and survives a dead
kernel or a cell timeout (the notebook keeps what ran). ``TrustedGrades`` (after Execute, before SaveAutoGrades)
replaces each ``test_*`` cell's outputs with the trusted check messages (a stdout stream) and the
earned points (an execute_result: nbgrader's partial-credit convention), so nothing the student's
kernel printed or raised decides a grade, and strips hidden-test regions from every cell. Both
read the trusted results file that the grader writes while the notebook runs, configured once as
``c.TrustedResults.results_file`` (``{student}``, ``{assignment}``, ``{notebook}`` in it name each
submission's own).

``TrustedIntake`` (first of ``Autograde.sanitize_preprocessors``, the step that reads the
submitted notebook) does what ``python -m autograder grade`` does before nbgrader runs, for a plain
``nbgrader autograde`` (formgrader's Autograde button in the instructor's course): the submission's
files copied without links into a private folder, the notebook as submitted given to the trusted
checks in the sandboxed engine (in a thread, while nbgrader executes the notebook), which write the
results file; nbgrader goes on with the notebook's nbgrader metadata repaired against the release
(:func:`autograder.grading.run.take_in`). An assignment that is not one of the kit's labs is left
to nbgrader as it is.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

from nbformat.notebooknode import NotebookNode
from nbformat.v4 import new_code_cell, new_output
from traitlets import Bool, Float, Unicode
from traitlets.config import LoggingConfigurable

from nbgrader.preprocessors import Execute, NbGraderPreprocessor

HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[^\n]*\n?", re.S | re.M)


class TrustedResults(LoggingConfigurable):
    """Base of the preprocessors that read the trusted results: one setting, ``c.TrustedResults.results_file``,
    configures them all."""

    results_file = Unicode("", help="the trusted results (JSON), written while the notebook runs; "
                                    "{student}, {assignment} and {notebook} are replaced by the submission's").tag(config=True)

    def results_path(self, resources: dict) -> str:
        """:attr:`results_file` of the submission of ``resources`` (nbgrader's ids, made safe as file names)."""
        from autograder.grading.intake import safe_name

        ids = resources.get("nbgrader", {})
        if not self.results_file or "{" not in self.results_file:
            return self.results_file
        return self.results_file.format(**{k: safe_name(str(ids.get(k) or "")) for k in ("student", "assignment", "notebook")})


def kit_lab(resources: dict) -> str:
    """The lab of the assignment nbgrader processes, or "" when it is not one of the kit's."""
    from labtools.labs import all_labs

    lab = resources.get("nbgrader", {}).get("assignment") or ""
    return lab if lab in all_labs() else ""


class TrustedIntake(NbGraderPreprocessor, TrustedResults):
    """The submission taken in and its trusted checks started, before nbgrader sanitizes the notebook
    (see the module docstring)."""

    sandbox = Bool(True, help="run the trusted checks in the OS sandbox").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict):
        import nbformat
        from nbgrader.coursedir import CourseDirectory

        from autograder.grading.run import take_in

        lab = kit_lab(resources)
        path = self.results_path(resources)
        if not lab or not path:
            self.log.warning("TrustedIntake: %r is not one of the kit's labs (or no results file): left to nbgrader",
                             resources.get("nbgrader", {}).get("assignment"))
            return nb, resources
        results = Path(path)
        results.unlink(missing_ok=True)  # an earlier autograde's: TrustedGrades waits for this one's
        ids = resources["nbgrader"]
        name = f"{ids['notebook']}.ipynb"
        folder = Path(resources.get("metadata", {}).get("path") or ".")
        coursedir = CourseDirectory(config=self.config)
        release = Path(coursedir.format_path(coursedir.release_directory, ".", lab)) / name
        work = Path(tempfile.mkdtemp(prefix=f"trusted-{ids['student']}-"))
        submitted = work / "submission"
        try:
            intake = take_in(lab, folder, folder / name, submitted, release, [], name=name)
            repaired = nbformat.read(submitted / name, as_version=4) if intake.nb is not None else nb
        except Exception as error:  # the grader's own failure: every check a grader error
            self._fail(lab, results, work, error)
            return nb, resources
        threading.Thread(target=self._check, args=(intake, lab, submitted, work, results),
                         name=f"trusted-checks-{ids['student']}").start()
        return repaired, resources

    def _check(self, intake, lab: str, submitted: Path, work: Path, results: Path) -> None:
        from autograder.grading.run import publish, trusted_results

        try:
            publish(trusted_results(intake, lab, submitted, work, self.sandbox), results)
        except Exception as error:
            self._fail(lab, results, work, error)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _fail(self, lab: str, results: Path, work: Path, error: Exception) -> None:
        from autograder.grading.run import grader_failure, publish

        self.log.error("TrustedIntake: the trusted checks failed: %s: %s", type(error).__name__, error)
        publish(grader_failure(lab, "", error, self.sandbox), results)
        shutil.rmtree(work, ignore_errors=True)


class RobustExecute(Execute, TrustedResults):
    """Execute that keeps going when the kernel dies or a cell times out.

    After a dead kernel, a cell time-out or ``total_seconds`` of execution, the remaining code
    cells are not run: each gets a ``[grader]`` note instead, and the notebook keeps what ran.
    """

    total_seconds = Float(300.0, help="execution budget of the whole notebook").tag(config=True)
    sandbox = Bool(True, help="run the kernel in the OS sandbox (autograder.grading.kernel)").tag(config=True)
    hung_timeout = Float(10.0, help="cell time-out once the trusted checks saw a function time out").tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.sandbox:  # after nbgrader's Execute, which sets its own kernel manager class
            from autograder.grading.kernel import SandboxedKernelManager

            self.kernel_manager_class = SandboxedKernelManager

    def preprocess(self, nb: NotebookNode, resources: dict, *args, **kwargs):
        self._results = self.results_path(resources)
        self._stopped = ""
        self._hung_checked = False
        self._started = time.monotonic()
        try:
            return super().preprocess(nb, resources, *args, **kwargs)
        except Exception as error:  # DeadKernelError, UnresponsiveKernelError, a failed kernel start...
            self.log.warning("execution stopped: %s: %s", type(error).__name__, error)
            if not self._stopped:
                self._stopped = f"{type(error).__name__}: {str(error)[:300]}"
                for cell in nb.cells:
                    if cell.cell_type == "code" and not cell.get("outputs"):
                        cell.outputs = [self._note()]
            try:
                if getattr(self, "km", None) is not None:
                    self.km.shutdown_kernel(now=True)
            except Exception:
                pass
            return nb, resources

    def _note(self):
        return new_output("stream", name="stdout", text=f"[grader] not run: execution stopped earlier ({self._stopped})\n")

    def _shorten_if_hung(self) -> None:
        """A function that timed out in the trusted checks hangs the notebook as well: once their
        results are there and say so, the remaining cells get :attr:`hung_timeout`."""
        results = getattr(self, "_results", self.results_file)
        if self._hung_checked or not results or not Path(results).is_file():
            return
        self._hung_checked = True
        checks = json.loads(Path(results).read_text()).get("checks", [])
        if any("timed out" in c.get("message", "") for c in checks):
            self.timeout = min(self.timeout or self.hung_timeout, self.hung_timeout)

    def preprocess_cell(self, cell, resources, index):
        self._shorten_if_hung()
        if self._stopped:
            if cell.cell_type == "code":
                cell.outputs = [self._note()]
            return cell, resources
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except Exception as error:
            self._stopped = f"the kernel stopped in this cell: {type(error).__name__}: {str(error)[:200]}"
            cell.outputs = list(cell.get("outputs", [])) + [
                new_output("stream", name="stdout", text=f"[grader] {self._stopped}\n")]
            return cell, resources
        if cell.cell_type == "code" and any(o.get("output_type") == "error" and o.get("ename") == "CellTimeoutError"
                                            for o in cell.get("outputs", [])):
            self._stopped = f"a cell ran longer than {self.timeout} s"
        elif time.monotonic() - self._started > self.total_seconds:
            self._stopped = f"the notebook ran longer than {self.total_seconds:g} s"
        return cell, resources


def strip_hidden(source: str) -> str:
    return HIDDEN.sub("", source)


class TrustedGrades(NbGraderPreprocessor, TrustedResults):
    """Outputs of the test cells from the trusted checks (``results_file``, JSON)."""

    wait_seconds = Float(900.0, help="how long to wait for the results file to appear").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict):
        path = self.results_path(resources)
        if path and "{" in self.results_file and not kit_lab(resources):
            return nb, resources  # not one of the kit's labs: TrustedIntake left it to nbgrader
        waited = time.monotonic() + (self.wait_seconds if path else 0)
        while path and not Path(path).is_file() and time.monotonic() < waited:
            time.sleep(0.1)  # the grader writes it (atomically) when its checks are done
        if path and Path(path).is_file():
            results = json.loads(Path(path).read_text())
        else:
            results = self._compute(nb, resources)
        cells = results.get("cells", {})
        present = {c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in nb.cells}
        for grade_id, entry in cells.items():  # a deleted locked test cell comes back, with its trusted result
            if grade_id in present:
                continue
            function = grade_id[len("test_"):]
            where = next((i + 1 for i, c in enumerate(nb.cells)
                          if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == function), len(nb.cells))
            restored = new_code_cell(
                "# [grader] this locked test cell was missing from the submission; the grader restored it\n",
                metadata={"nbgrader": {"grade": True, "grade_id": grade_id, "locked": True, "solution": False,
                                       "task": False, "points": entry["max_points"], "schema_version": 3}})
            nb.cells.insert(where, restored)
        for cell in nb.cells:
            cell.source = strip_hidden(cell.source) if isinstance(cell.source, str) else cell.source
            meta = cell.get("metadata", {}).get("nbgrader", {})
            grade_id = meta.get("grade_id", "")
            if cell.cell_type != "code" or not meta.get("grade") or not grade_id.startswith("test_"):
                continue
            entry = cells.get(grade_id)
            if entry is None:
                cell.outputs = [new_output("stream", name="stdout", text="[grader] no trusted result for this cell\n"),
                                new_output("execute_result", data={"text/plain": "0.0"}, execution_count=1)]
                continue
            earned = min(float(entry["points"]), float(meta.get("points", entry["max_points"])))
            cell.outputs = [
                new_output("stream", name="stdout", text="\n".join(entry["lines"]) + "\n"),
                new_output("execute_result", data={"text/plain": repr(round(earned, 6))}, execution_count=1),
            ]
        return nb, resources

    def _compute(self, nb, resources):
        from autograder.grading.trusted import grade_notebook_dict

        lab = resources.get("nbgrader", {}).get("assignment") or nb.metadata.get("lab_id", "")
        files = Path(resources.get("metadata", {}).get("path", "."))
        return grade_notebook_dict(json.loads(json.dumps(nb)), lab, files)
