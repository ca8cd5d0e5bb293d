"""Build the lab notebooks from percent-format sources and release them with nbgrader.

The notebooks are written as readable Python scripts in ``autograder/labs/<lab>/notebook.py``.
A line starting with ``# %%`` opens a cell; the rest of that line says what the cell is::

    # %%                                   a code cell
    # %% [markdown]                        a markdown cell (its lines are "# "-commented)
    # %% [markdown] {"nbgrader": "answer", "id": "report_distances"}
                                           a manually graded answer cell (Markdown)
    # %% [solution] distances              the solution cell of `distances`
    # %% [tests] distances                 the locked autograded test cell `test_distances`
    # %% [locked] setup                    a read-only code cell
    # %% [locked] setup {"tags": ["nbval-skip"]}
                                           any cell may add notebook tags or an explicit "id"

What the lab grades is declared once, in its spec (``labtools/labs/<lab>.py``, see
:mod:`labtools.labs`), and read from there: the points of each test cell (``Solution.points``,
``FileDeliverable.points``) and of each answer cell of the report (``Report.points``, graded by
hand in formgrader), whether a solution cell is graded (an ungraded one, pasted from an earlier lab
or called by a graded function, is still cleared from the release and carries the tag
``ungraded``) and which lab's reference module holds its solution (``Solution.reference``). The
source names its [solution] and [tests] cells and its answer cells, in the spec's order, and
states none of that: a source that does (``points``, ``graded``, ``reference``), or that has a
solution, test or answer cell the spec does not declare or lacks one it declares, is refused with
the file, the line and the spec to edit.

A solution cell is never written by hand: its code is generated from the reference module
(``autograder.labs.<lab>.reference``), the def line and docstring of the function followed by
its body between ``### BEGIN SOLUTION`` and ``### END SOLUTION``, so the reference module is the
one copy of every solution. For a class (``# %% [solution] NormSoftmax``) the class line, its
docstring and every method's def line(s) and docstring are kept, and each method's body lies
between its own pair of delimiters: students write the bodies. Lines before the first marker are
a header for the reader and are ignored.

Cells marked ``# NBVAL_CHECK_OUTPUT`` have their outputs compared by nbval. Those outputs are
recorded, with a hash of the cell's source, in ``autograder/labs/<lab>/notebook.outputs.json`` by
``build --execute`` (the notebook run once in fast mode) and merged in by every plain ``build``.
No other cell keeps an output or an execution count; a checked cell gets the execution count of
a clean top-to-bottom run (its rank among the code cells), without which nbval would not compare it.

Commands (run from anywhere)::

    python -m autograder.notebooks build [--execute] [LAB ...]
        writes autograder/course/source/<lab>/<lab>.ipynb
    python -m autograder.notebooks release [LAB ...]
        nbgrader generate_assignment in a temporary copy of the course (private gradebook),
        then writes the student version to notebooks/<lab>.ipynb
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder import labs
from autograder.nbgrader_cli import tool_env
from autograder.paths import COURSE_DIR, RELEASE_DIR, REPO, grader_models_dir
from labtools.labs import LabSpec, lab as lab_spec, lab_ids

#: Every lab of the specs: its notebook source is autograder/labs/<lab>/notebook.py, its reference
#: autograder.labs.<lab>.reference.
LABS = lab_ids()

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CHECK_OUTPUT = "# NBVAL_CHECK_OUTPUT"
NBGRADER_SCHEMA = 3
KINDS = ("code", "markdown", "solution", "tests", "locked")
#: Options of a [solution] or [tests] cell that the lab's spec holds, refused in a source.
SPEC_OPTIONS = ("points", "graded", "reference")
_MARKER = re.compile(r"^# %%(?:\s*\[(?P<kind>\w+)\])?(?:\s+(?P<name>[A-Za-z_]\w*))?\s*(?P<options>\{.*\})?\s*$")
_CELL_ID = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

NOTEBOOK_METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


class NotebookSourceError(ValueError):
    """A notebook source file is malformed or disagrees with its lab's spec (says which file and line)."""


@dataclass
class CellSpec:
    kind: str
    name: str | None
    options: dict
    lines: list[str] = field(default_factory=list)
    line_number: int = 0


# ----------------------------------------------------------------------------- solutions


def split_function(function) -> tuple[list[str], list[str]]:
    """``(header, body)`` source lines of a top-level function: def line(s) and docstring, then the rest.

    The header ends with the docstring's last line (found with ``ast``), or with the def line
    when there is no docstring. Trailing blank lines of the body are dropped.
    """
    source = inspect.getsource(function)
    lines = source.rstrip("\n").split("\n")
    tree = ast.parse(source)
    definition = tree.body[0]
    if not isinstance(definition, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise TypeError(f"{function!r} is not a function defined at the top level")
    cut = _body_start(definition, function.__name__)
    header, body = lines[:cut], lines[cut:]
    while body and not body[-1].strip():
        body.pop()
    return header, body


def _body_start(definition: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> int:
    """Index (0-based, in the definition's source lines) of the first line after the def line(s) and docstring."""
    first = definition.body[0]
    has_docstring = (
        isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
    )
    if has_docstring:
        if len(definition.body) == 1:
            raise ValueError(f"{name} has a docstring but no body")
        return first.end_lineno
    return first.lineno - 1


def split_class(cls) -> list[tuple[list[str], list[str]]]:
    """The source of a top-level class cut at its methods' bodies: ``[(kept, body), ..., (kept, [])]``.

    Each ``kept`` run of lines (the class line and docstring, class-level statements, a method's
    decorators, def line(s) and docstring, the blank lines between methods) is followed by the
    ``body`` of one method (its statements after the docstring); the last pair holds what follows
    the last method. Joining all the runs in order gives the class's source back. A class without
    methods is refused: it would leave students nothing to write.
    """
    source = inspect.getsource(cls)
    lines = source.rstrip("\n").split("\n")
    definition = ast.parse(textwrap.dedent(source)).body[0]
    if not isinstance(definition, ast.ClassDef):
        raise TypeError(f"{cls!r} is not a class defined at the top level")
    methods = [n for n in definition.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not methods:
        raise ValueError(f"{cls.__name__} defines no method: nothing to leave to the students")
    parts, done = [], 0
    for method in methods:
        start, end = _body_start(method, f"{cls.__name__}.{method.name}"), method.end_lineno
        parts.append((lines[done:start], lines[start:end]))
        done = end
    parts.append((lines[done:], []))
    return parts


def _delimited(body: list[str]) -> list[str]:
    first = next(line for line in body if line.strip())
    indent = first[: len(first) - len(first.lstrip())]
    return [indent + BEGIN] + body + [indent + END]


def solution_source(obj) -> str:
    """The solution cell of a function or class: the header(s), each body between the nbgrader delimiters.

    A function: its def line(s) and docstring, then its body between the delimiters. A class: its
    class line and docstring, then for every method its def line(s) and docstring followed by its
    body between a pair of delimiters of its own (see :func:`split_class`).
    """
    if inspect.isclass(obj):
        lines = []
        for kept, body in split_class(obj):
            lines += kept + (_delimited(body) if body else [])
        return "\n".join(lines)
    header, body = split_function(obj)
    return "\n".join(header + _delimited(body))


def strip_solution_markers(source: str) -> str:
    """A solution cell's code without its delimiter lines (the reference function's or class's source)."""
    return "\n".join(line for line in source.split("\n") if line.strip() not in (BEGIN, END))


# ----------------------------------------------------------------------------- parsing


def parse_source(path: Path) -> list[CellSpec]:
    """The cells of a percent-format notebook source file."""
    cells: list[CellSpec] = []
    for number, line in enumerate(path.read_text().split("\n"), start=1):
        if line.startswith("# %%"):
            match = _MARKER.match(line)
            if not match:
                raise NotebookSourceError(f"{path}:{number}: cannot read the cell marker {line!r}")
            kind = match["kind"] or "code"
            if kind not in KINDS:
                raise NotebookSourceError(f"{path}:{number}: unknown cell kind [{kind}]; expected one of {KINDS}")
            try:
                options = json.loads(match["options"]) if match["options"] else {}
            except json.JSONDecodeError as error:
                raise NotebookSourceError(f"{path}:{number}: the options are not JSON: {error}") from error
            if kind in ("solution", "tests") and not match["name"]:
                raise NotebookSourceError(f"{path}:{number}: a [{kind}] cell needs a function name")
            cells.append(CellSpec(kind, match["name"], options, line_number=number))
        elif cells:
            cells[-1].lines.append(line)
    if not cells:
        raise NotebookSourceError(f"{path}: no cell marker (# %%) found")
    return cells


def _text(lines: list[str]) -> str:
    lines = list(lines)
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def _markdown(lines: list[str], where: str) -> str:
    out = []
    for line in lines:
        if line.startswith("# "):
            out.append(line[2:])
        elif line.rstrip() in ("#", ""):
            out.append("")
        else:
            raise NotebookSourceError(f"{where}: markdown lines must start with '# ', got {line!r}")
    return _text(out)


def _nbgrader(grade_id: str, *, grade: bool, solution: bool, locked: bool, points: float | None = None) -> dict:
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": NBGRADER_SCHEMA,
        "solution": solution,
        "task": False,
    }
    if grade:
        meta["points"] = points
    return meta


def source_path(lab: str) -> Path:
    """The percent-format source of ``lab``'s notebook."""
    return labs.lab_dir(lab) / "notebook.py"


def check_against_spec(lab: LabSpec, path: Path, cells: list[CellSpec]) -> None:
    """Refuse a source whose [solution] and [tests] cells are not the spec's (the same names, in
    the same order) or that states what the spec holds (:data:`SPEC_OPTIONS`). The error names the
    file, the line and the spec to edit."""
    edit = f"labtools/labs/{lab.id}.py"
    for cell in cells:
        answer = cell.kind == "markdown" and cell.options.get("nbgrader") == "answer"
        stated = sorted(set(SPEC_OPTIONS) & set(cell.options)) if cell.kind in ("solution", "tests") or answer else []
        if stated:
            what = f"the answer cell {cell.options.get('id')}" if answer else f"[{cell.kind}] {cell.name}"
            raise NotebookSourceError(f"{path}:{cell.line_number}: {stated} of {what} come from "
                                      f"the lab's spec: remove them here, edit {edit} to change them")
    answers = [(cell.options.get("id"), cell) for cell in cells
               if cell.kind == "markdown" and cell.options.get("nbgrader") == "answer"]
    if [answer for answer, _ in answers] != list(lab.report_points):
        where = next((f"{path}:{cell.line_number}" for answer, cell in answers if answer not in lab.report_points),
                     str(path))
        raise NotebookSourceError(f"{where}: the answer cells {[answer for answer, _ in answers]} are not the report "
                                  f"cells {list(lab.report_points)} that {edit} declares, in that order; declare "
                                  f"them there (with their points) or edit the cells")
    for kind, names in (("solution", [s.name for s in lab.solutions]), ("tests", list(lab.test_points))):
        found = [cell for cell in cells if cell.kind == kind]
        for cell in found:
            if cell.name not in names:
                raise NotebookSourceError(f"{path}:{cell.line_number}: [{kind}] {cell.name} is not declared in {edit} "
                                          f"(its {kind} cells: {', '.join(names)}); declare it there or remove the cell")
        missing = [name for name in names if name not in {cell.name for cell in found}]
        if missing:
            raise NotebookSourceError(f"{path}: no [{kind}] cell for {', '.join(missing)}, which {edit} declares; "
                                      f"add the cells or remove them from the spec")
        if [cell.name for cell in found] != names:
            raise NotebookSourceError(f"{path}: the [{kind}] cells {[cell.name for cell in found]} are not "
                                      f"{names}, in the order {edit} declares them")


def build_notebook(lab: str, outputs: dict | None = None, *, with_outputs: bool = True) -> nbformat.NotebookNode:
    """The source notebook (with solutions) of ``lab``: its source, with what its spec declares.

    ``outputs``: the recorded outputs of the NBVAL_CHECK_OUTPUT cells (default: the recorded file);
    ``with_outputs=False`` leaves every cell without outputs (a notebook about to be executed).
    """
    declared = lab_spec(lab)
    path = source_path(lab)
    specs = parse_source(path)
    check_against_spec(declared, path, specs)
    cells = []
    seen_ids: set[str] = set()
    locked_count = 0
    for index, spec in enumerate(specs):
        where = f"{path}:{spec.line_number}"
        options = dict(spec.options)
        cell_id = options.pop("id", None)
        tags = options.pop("tags", None)
        nbgrader = None
        if spec.kind == "markdown":
            role = options.pop("nbgrader", None)
            cell = nbformat.v4.new_markdown_cell(_markdown(spec.lines, where))
            if role == "answer":
                if not cell_id:
                    raise NotebookSourceError(f"{where}: an answer cell needs an \"id\"")
                nbgrader = _nbgrader(cell_id, grade=True, solution=True, locked=False,
                                     points=float(declared.report_points[cell_id]))
            elif role == "locked":
                locked_count += 1
                nbgrader = _nbgrader(cell_id or f"locked_md_{locked_count}", grade=False, solution=False, locked=True)
            elif role is not None:
                raise NotebookSourceError(f"{where}: unknown markdown role {role!r} (answer or locked)")
        elif spec.kind == "solution":
            if _text(spec.lines):
                raise NotebookSourceError(f"{where}: a [solution] cell is generated from the reference; leave it empty")
            solution = declared.solution(spec.name)
            module = labs.reference(solution.reference or lab)
            function = getattr(module, spec.name, None)
            if not (inspect.isfunction(function) or inspect.isclass(function)):
                raise NotebookSourceError(f"{where}: {module.__name__} has no function or class {spec.name!r}")
            cell = nbformat.v4.new_code_cell(solution_source(function))
            cell_id = cell_id or spec.name
            # An autograded answer cell. Ungraded ones are still solution cells, so nbgrader clears
            # them from the release; they simply carry no points.
            nbgrader = _nbgrader(spec.name, grade=False, solution=True, locked=False)
            if not solution.graded:
                tags = sorted(set(tags or []) | {"ungraded"})
        elif spec.kind == "tests":
            grade_id = f"test_{spec.name}"
            cell = nbformat.v4.new_code_cell(_text(spec.lines))
            cell_id = cell_id or grade_id
            nbgrader = _nbgrader(grade_id, grade=True, solution=False, locked=True,
                                 points=float(declared.test_points[spec.name]))
        elif spec.kind == "locked":
            locked_count += 1
            grade_id = spec.name or f"locked_{locked_count}"
            cell = nbformat.v4.new_code_cell(_text(spec.lines))
            cell_id = cell_id or grade_id
            nbgrader = _nbgrader(grade_id, grade=False, solution=False, locked=True)
        else:
            cell = nbformat.v4.new_code_cell(_text(spec.lines))
        if options:
            raise NotebookSourceError(f"{where}: unknown options {sorted(options)}")
        cell_id = cell_id or f"{lab.split('_')[0]}-{spec.kind}-{index:02d}"
        if not _CELL_ID.match(cell_id) or cell_id in seen_ids:
            raise NotebookSourceError(f"{where}: cell id {cell_id!r} is invalid or used twice")
        seen_ids.add(cell_id)
        cell["id"] = cell_id
        if nbgrader is not None:
            cell.metadata["nbgrader"] = nbgrader
        if tags:
            cell.metadata["tags"] = list(tags)
        cells.append(cell)
    notebook = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(NOTEBOOK_METADATA))
    notebook.nbformat_minor = 5
    if with_outputs:
        _apply_outputs(lab, notebook, outputs if outputs is not None else load_outputs(lab))
    else:
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cell.execution_count, cell.outputs = None, []
    return notebook


# ----------------------------------------------------------------------------- outputs


def outputs_path(lab: str) -> Path:
    return labs.lab_dir(lab) / "notebook.outputs.json"


def load_outputs(lab: str) -> dict:
    path = outputs_path(lab)
    return json.loads(path.read_text()) if path.exists() else {}


def is_checked(cell) -> bool:
    return cell.cell_type == "code" and any(line.strip() == CHECK_OUTPUT for line in cell.source.split("\n"))


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _apply_outputs(lab: str, notebook, recorded: dict) -> None:
    """Give each NBVAL_CHECK_OUTPUT cell its recorded outputs; fail when they are missing or stale."""
    stale = []
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for count, cell in enumerate(code_cells, start=1):
        cell.execution_count = None
        cell.outputs = []
        if not is_checked(cell):
            continue
        entry = recorded.get(cell.id)
        if entry is None or entry.get("source_sha256") != source_hash(cell.source):
            stale.append(cell.id)
            continue
        # nbval compares only cells that were run, i.e. have an execution count: give them the
        # count a clean top-to-bottom run gives (the cell's rank among the code cells).
        cell.execution_count = count
        cell.outputs = [nbformat.from_dict(output) for output in entry["outputs"]]
        for output in cell.outputs:
            if output.output_type == "execute_result":
                output.execution_count = count
    if stale:
        raise NotebookSourceError(
            f"{lab}: no recorded outputs for the NBVAL_CHECK_OUTPUT cells {stale} (new or edited); "
            f"record them with: LABTOOLS_DATA=... python -m autograder.notebooks build --execute {lab}"
        )


def _keep_output(output) -> dict | None:
    """The part of one output worth comparing: stdout text and plain-text results, nothing else."""
    if output.output_type == "stream":
        return {"name": "stdout", "output_type": "stream", "text": output.text} if output.name == "stdout" else None
    if output.output_type == "execute_result" and "text/plain" in output.get("data", {}):
        return {"data": {"text/plain": output.data["text/plain"]}, "execution_count": None,
                "metadata": {}, "output_type": "execute_result"}
    return None


def _merge_streams(outputs: list[dict]) -> list[dict]:
    merged: list[dict] = []
    for output in outputs:
        if merged and output["output_type"] == "stream" and merged[-1]["output_type"] == "stream":
            merged[-1] = {**merged[-1], "text": merged[-1]["text"] + output["text"]}
        else:
            merged.append(output)
    return merged


def skipped_by_nbval(cell) -> bool:
    """True for a cell nbval does not run (the ``nbval-skip`` tag or an ``# NBVAL_SKIP`` line)."""
    return "nbval-skip" in cell.metadata.get("tags", []) or (
        cell.cell_type == "code" and any(line.strip() == "# NBVAL_SKIP" for line in cell.source.split("\n"))
    )


def run_notebook(notebook, workdir: Path, *, timeout: int = 900, tolerate=lambda cell: False):
    """Run ``notebook`` cell by cell in fast mode with cwd ``workdir``, as nbval does.

    Cells nbval skips are skipped. A cell that raises stops the run, unless ``tolerate(cell)``;
    returns ``(executed copy, errors)``, errors a list of ``(index, cell, CellExecutionError)``
    (the tolerated ones, then the one that stopped the run, if any). The kernel gets
    ``LABTOOLS_FAST=1`` and ``LABTOOLS_MODELS`` (:func:`autograder.paths.grader_models_dir`).
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = copy.deepcopy(notebook)
    errors = []
    saved = {k: os.environ.get(k) for k in ("LABTOOLS_FAST", "LABTOOLS_MODELS")}
    os.environ.update(LABTOOLS_FAST="1", LABTOOLS_MODELS=str(grader_models_dir()))
    try:
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(workdir)}})
        with client.setup_kernel():
            for index, cell in enumerate(notebook.cells):
                if cell.cell_type != "code" or skipped_by_nbval(cell):
                    continue
                try:
                    client.execute_cell(cell, index)
                except CellExecutionError as error:
                    errors.append((index, cell, error))
                    if not tolerate(cell):
                        break
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return notebook, errors


def is_test_cell(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta.get("grade")) and bool(meta.get("locked"))


def record_outputs(lab: str, keep: Path | None = None, allow_failed_tests: bool = False) -> dict:
    """Execute ``lab``'s notebook in fast mode and record the outputs of its NBVAL_CHECK_OUTPUT cells.

    ``keep``: a folder to write the executed notebook to (to look at its figures).
    ``allow_failed_tests``: go on past a failing autograded test cell (with a warning) instead of
    stopping; any other failing cell still stops the run and records nothing.
    """
    notebook = build_notebook(lab, with_outputs=False)
    tolerate = is_test_cell if allow_failed_tests else (lambda cell: False)
    with tempfile.TemporaryDirectory(prefix=f"{lab}-") as workdir:
        executed, errors = run_notebook(notebook, Path(workdir), tolerate=tolerate)
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        nbformat.write(executed, keep / f"{lab}.executed.ipynb")
    if errors and not tolerate(errors[-1][1]):
        index, cell, error = errors[-1]
        raise RuntimeError(f"{lab}: cell {index} ({cell.id}) failed; nothing recorded.\n{error}")
    for index, cell, error in errors:
        print(f"WARNING: {lab}: the test cell {cell.id} failed (recording anyway): {error.ename}: "
              f"{_ANSI.sub('', error.evalue)[:500]}", file=sys.stderr)
    recorded = {}
    for cell in executed.cells:
        if is_checked(cell):
            outputs = [kept for kept in map(_keep_output, cell.outputs) if kept is not None]
            recorded[cell.id] = {"source_sha256": source_hash(cell.source), "outputs": _merge_streams(outputs)}
    outputs_path(lab).write_text(json.dumps(recorded, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    return recorded


# ----------------------------------------------------------------------------- writing


def dumps(notebook) -> str:
    """Deterministic text of a notebook: nbformat's sorted JSON with one final newline."""
    text = nbformat.writes(notebook, version=4)
    return text if text.endswith("\n") else text + "\n"


def source_notebook_path(lab: str) -> Path:
    return COURSE_DIR / "source" / lab / f"{lab}.ipynb"


def build(lab: str) -> Path:
    path = source_notebook_path(lab)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(build_notebook(lab)))
    return path


def generate_release(lab: str, notebook_text: str | None = None) -> str:
    """The student version of ``lab`` as nbgrader's generate_assignment makes it (normalized text).

    Runs in a temporary copy of the course folder (the config and this lab's source notebook only)
    with a private gradebook, so nothing is left in the repository. ``notebook_text`` replaces the
    committed source notebook (tests use it to release a freshly built one).
    """
    with tempfile.TemporaryDirectory(prefix="metric-lab-release-") as tmp:
        course = Path(tmp) / "course"
        source = course / "source" / lab
        source.mkdir(parents=True)
        shutil.copy2(COURSE_DIR / "nbgrader_config.py", course / "nbgrader_config.py")
        text = notebook_text if notebook_text is not None else source_notebook_path(lab).read_text()
        (source / f"{lab}.ipynb").write_text(text)
        command = [sys.executable, "-m", "nbgrader", "generate_assignment", lab, "--force",
                   f"--CourseDirectory.db_url=sqlite:///{Path(tmp) / 'gradebook.db'}"]
        result = subprocess.run(command, cwd=course, capture_output=True, text=True, env=tool_env())
        released = course / "release" / lab / f"{lab}.ipynb"
        if result.returncode != 0 or not released.exists():
            raise RuntimeError(f"nbgrader generate_assignment {lab} failed:\n{result.stdout}\n{result.stderr}")
        return dumps(nbformat.read(released, as_version=4))


def release(lab: str) -> Path:
    RELEASE_DIR.mkdir(parents=True, exist_ok=True)
    path = RELEASE_DIR / f"{lab}.ipynb"
    path.write_text(generate_release(lab))
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.notebooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="write autograder/course/source/<lab>/<lab>.ipynb")
    build_parser.add_argument("--execute", action="store_true",
                              help="first run the notebook in fast mode and record its NBVAL_CHECK_OUTPUT outputs")
    build_parser.add_argument("--keep-executed", type=Path, default=None, metavar="DIR",
                              help="with --execute: also write the executed notebooks (with figures) to DIR")
    build_parser.add_argument("--allow-failed-tests", action="store_true",
                              help="with --execute: record even when an autograded test cell fails")
    build_parser.add_argument("labs", nargs="*", default=[])
    release_parser = commands.add_parser("release", help="nbgrader generate_assignment, then notebooks/<lab>.ipynb")
    release_parser.add_argument("labs", nargs="*", default=[])
    args = parser.parse_args(argv)
    labs = args.labs or list(LABS)
    unknown = sorted(set(labs) - set(LABS))
    if unknown:
        parser.error(f"unknown labs {unknown}; expected some of {list(LABS)}")
    for lab in labs:
        if args.command == "build":
            if args.execute:
                record_outputs(lab, keep=args.keep_executed, allow_failed_tests=args.allow_failed_tests)
            print(f"wrote {build(lab).relative_to(REPO)}")
        else:
            print(f"wrote {release(lab).relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
