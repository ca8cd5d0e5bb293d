"""``python -m autograder grade <lab_id> <submissions> [--out DIR] [--jobs N]``.

Each submission is graded in its own temporary copy of the course (so parallel sqlite writes
never meet): the trusted checks run in the sandboxed engine, then real ``nbgrader autograde``
(with :class:`RobustExecute` and :class:`TrustedGrades`) and ``nbgrader generate_feedback``. The
results are merged one by one into ``DIR/gradebook.db`` with nbgrader's Gradebook API, and
written to ``DIR/grades.csv``, ``DIR/feedback/<student>/`` and ``DIR/histogram.png``.

Grades come from the trusted checks only (the notebook's own outputs never decide a point); the
notebook is executed for the feedback page. Before nbgrader sees it, its nbgrader metadata is
repaired (:func:`repair_notebook`: deleted locked cells put back, edited metadata restored) so
that nbgrader can always process it. A function that timed out in the sandbox gets short cell
time-outs in the notebook; RobustExecute stops executing after a dead kernel or a time-out.
Nothing is written into the course folder given with ``--course``: each run works in ``DIR``.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from autograder.grading import nbrun
from autograder.nbgrader_cli import tool_env

REPO = Path(__file__).resolve().parents[2]
COURSE = REPO / "autograder" / "course"
PIPELINE = """
c.Autograde.autograde_preprocessors = [
    'autograder.grading.preprocessors.RobustExecute',
    'nbgrader.preprocessors.IgnorePattern',
    'nbconvert.preprocessors.ClearMetadataPreprocessor',
    'nbgrader.preprocessors.LimitOutput',
    'autograder.grading.preprocessors.TrustedGrades',
    'nbgrader.preprocessors.SaveAutoGrades',
    'nbgrader.preprocessors.AssignLatePenalties',
    'nbgrader.preprocessors.CheckCellMetadata',
]
c.Execute.timeout = {timeout}
c.Execute.interrupt_on_timeout = True
c.Execute.raise_on_iopub_timeout = False
c.RobustExecute.total_seconds = {budget}
c.TrustedGrades.results_file = {results!r}
c.RobustExecute.results_file = {results!r}
c.RobustExecute.sandbox = {sandboxed!r}
c.SandboxedKernelManager.masked = {masked!r}
"""
#: The note every row of a run without the OS sandbox carries.
NOT_SANDBOXED = "not sandboxed: graded with --no-sandbox, the submission's code ran with the grader's rights"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80] or "student"


#: Limits on an LMS archive: a bigger member or a bigger whole is refused, not unpacked.
MAX_MEMBER_BYTES = 500_000_000
MAX_ARCHIVE_BYTES = 5_000_000_000
#: Moodle names each student's folder ``Full Name_<id>_assignsubmission_file_``.
MOODLE_FOLDER = re.compile(r"^(?P<student>.+?)_\d+_assignsubmission_[a-z]+_?$")
#: Canvas names each file ``<login>_[LATE_]<id>_<id>_<original name>`` (``-1`` before a resubmission's suffix).
CANVAS_FILE = re.compile(r"^(?P<student>[^_]+)_(?:LATE_)?\d+_\d+_(?P<name>.+)$")


def collect(lab: str, submissions: Path, scratch: Path) -> list[tuple[str, Path, list[str], Path | None]]:
    """``(student, folder with the notebook and its files, notes, notebook or None)`` per submission.

    ``submissions`` is nbgrader's ``submitted/`` folder (or its parent), a folder of student folders,
    or a zip archive of either, or an LMS export (Moodle: a folder per student; Canvas: loose files
    prefixed with the student's login and ids).
    """
    if submissions.is_file():
        if not zipfile.is_zipfile(submissions):
            raise SystemExit(f"{submissions} is neither a folder nor a zip archive of submissions")
        submissions = _unzip(submissions, scratch / "unzipped")
        if _nbgrader_root(submissions, lab) is None:
            return _collect_lms(lab, submissions, scratch)
    if not submissions.is_dir():
        raise SystemExit(f"no submissions folder {submissions}")
    root = _nbgrader_root(submissions, lab) or submissions
    found = []
    for student_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        folder = student_dir / lab if (student_dir / lab).is_dir() else student_dir
        found.append(_one(lab, student_dir.name, folder))
    return found


def _unzip(archive_path: Path, target: Path) -> Path:
    """Extract the regular files of an archive into ``target``, refusing paths that leave it."""
    with zipfile.ZipFile(archive_path) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if sum(m.file_size for m in members) > MAX_ARCHIVE_BYTES:
            raise SystemExit(f"{archive_path} unpacks to more than {MAX_ARCHIVE_BYTES / 1e9:g} GB: refused")
        for member in members:
            name = Path(member.filename)
            is_link = (member.external_attr >> 16) & 0o170000 == 0o120000
            if (name.is_absolute() or ".." in name.parts or "__MACOSX" in name.parts or name.name.startswith("._")
                    or is_link or member.file_size > MAX_MEMBER_BYTES):
                continue
            out = target / name
            out.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
    target.mkdir(parents=True, exist_ok=True)
    return target


def _nbgrader_root(folder: Path, lab: str) -> Path | None:
    """The folder of student folders in nbgrader's layout under ``folder``, if it is one."""
    for candidate in (folder / "submitted", folder):
        if candidate.is_dir() and any((d / lab).is_dir() for d in candidate.iterdir() if d.is_dir()):
            return candidate
    entries = [p for p in folder.iterdir()]
    if len(entries) == 1 and entries[0].is_dir():  # an archive of one top folder
        return _nbgrader_root(entries[0], lab)
    return None


def _collect_lms(lab: str, root: Path, scratch: Path) -> list[tuple[str, Path, list[str], Path | None]]:
    """Submissions of a Moodle or Canvas export: one folder (files renamed back) per student."""
    files: dict[str, list[tuple[Path, str]]] = {}
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            match = MOODLE_FOLDER.match(entry.name)
            student = match["student"] if match else entry.name
            files.setdefault(student, []).extend((f, str(f.relative_to(entry))) for f in entry.rglob("*")
                                                 if f.is_file())
            continue
        match = CANVAS_FILE.match(entry.name)
        if match:
            student, name = match["student"], re.sub(r"-\d+(\.[A-Za-z0-9]+)$", r"\1", match["name"])
        else:
            student, _, name = entry.name.partition("_")
        files.setdefault(student, []).append((entry, name or entry.name))
    found = []
    for student, members in files.items():
        folder = scratch / "lms" / _safe_name(student)
        for source, name in members:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, folder / name)
        found.append(_one(lab, student, folder))
    return found


def _one(lab: str, student: str, folder: Path) -> tuple[str, Path, list[str], Path | None]:
    """The notebook of one student's folder: ``<lab>.ipynb``, else the only notebook there."""
    notes = []
    notebooks = sorted(folder.rglob("*.ipynb"))
    notebooks = [n for n in notebooks if ".ipynb_checkpoints" not in n.parts]
    exact = [n for n in notebooks if n.name == f"{lab}.ipynb"]
    if exact:
        return _safe_name(student), exact[0].parent, notes, exact[0]
    if len(notebooks) == 1:
        notes.append(f"the notebook was named {notebooks[0].name}, not {lab}.ipynb: graded anyway")
        return _safe_name(student), notebooks[0].parent, notes, notebooks[0]
    notes.append("no notebook found" if not notebooks else f"several notebooks and none named {lab}.ipynb")
    return _safe_name(student), folder, notes, None


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
        with open(course / "nbgrader_config.py", "a") as config:
            config.write(PIPELINE.format(timeout=int(min(120, max(15, time_limit / 4))),
                                         budget=max(20, int(time_limit * 0.7)), results=str(results_path),
                                         sandboxed=sandboxed, masked=[str(p) for p in hidden_deliverables()]))
        env = tool_env(LABTOOLS_FAST="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
        child = nbrun.start_forked([lab, student], course, env, log)
        results = grade_notebook_dict(nb, lab, submitted, limits=default_limits(sandboxed), workroot=work)
    results["notes"] = ([] if sandboxed else [NOT_SANDBOXED]) + notes + results.get("notes", [])
    results["sandboxed"] = sandboxed
    results_path.with_suffix(".tmp").write_text(json.dumps(results))
    os.replace(results_path.with_suffix(".tmp"), results_path)  # nbgrader reads it once it exists
    if child is not None:
        ended = nbrun.wait_forked(child, max(30.0, time_limit - (time.monotonic() - started)))
        with open(log, "a") as handle:
            handle.write(f"\n$ nbrun {lab} {student} -> {ended}\n")
    feedback = out / "feedback" / student
    feedback.mkdir(parents=True, exist_ok=True)
    produced = list((course / "feedback" / student / lab).glob("*.html"))
    for page in produced:
        shutil.copy(page, feedback / page.name)
    if not produced:
        (feedback / f"{lab}.html").write_text(_plain_feedback(student, lab, results))
    if not keep_work:
        shutil.rmtree(course, ignore_errors=True)
    results.update(student=student, seconds=time.monotonic() - started, work=str(work))
    return results


def copy_submission(folder: Path, target: Path, notebook: Path | None = None, name: str = "") -> list[str]:
    """Copy a student's regular files and folders from ``folder`` into ``target`` (the notebook
    ``notebook``, wherever it is, as ``name``); symbolic links and other notebooks are left out.

    A link could make the grader copy (and the sandbox see) any file of the grader's machine.
    Returns notes for the student.
    """
    links = []

    def ignore(directory, names):
        skipped = {n for n in names if os.path.islink(os.path.join(directory, n))}
        links.extend(sorted(skipped))
        if notebook is not None:
            skipped |= {n for n in names if n.endswith(".ipynb") or n == ".ipynb_checkpoints"}
        return skipped

    shutil.copytree(folder, target, ignore=ignore, dirs_exist_ok=True)
    if notebook is not None:
        if notebook.is_symlink():
            links.append(notebook.name)
        else:
            shutil.copy(notebook, target / name)
    return [f"{n} is a symbolic link: not graded" for n in links]


def repair_notebook(path: Path, release: Path) -> list[str]:
    """Put back the nbgrader metadata of ``path`` as released, so that nbgrader can process it.

    Cells whose grade_id the release does not know (or a second cell with the same id) lose their
    nbgrader metadata; cells with a known grade_id get the released metadata back; released grade
    and locked cells missing from the submission are put back after their predecessor. The trusted
    checks have already read the notebook as submitted. Returns notes for the student.
    """
    import nbformat

    notes: list[str] = []
    try:
        nb = nbformat.read(path, as_version=4)
        released = nbformat.read(release, as_version=4)
    except Exception as error:  # nbgrader will report it
        return [f"the notebook could not be repaired for nbgrader: {type(error).__name__}"]
    known = {}
    order = []
    for cell in released.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta and meta.get("grade_id"):
            known[meta["grade_id"]] = cell
            order.append(meta["grade_id"])
    seen = set()
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta is None:
            continue
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        grade_id = grade_id if isinstance(grade_id, str) else None  # a number or a list is no id nbgrader knows
        if grade_id not in known or grade_id in seen or known[grade_id].cell_type != cell.cell_type:
            del cell.metadata["nbgrader"]
            notes.append(f"a {cell.cell_type} cell had unknown or duplicate nbgrader metadata ({grade_id!r}): ignored")
            continue
        seen.add(grade_id)
        if meta != known[grade_id].metadata["nbgrader"]:
            cell.metadata["nbgrader"] = json.loads(json.dumps(known[grade_id].metadata["nbgrader"]))
            notes.append(f"the nbgrader metadata of cell {grade_id} had been edited: restored")
    for k, grade_id in enumerate(order):
        original = known[grade_id]
        meta = original.metadata["nbgrader"]
        if grade_id in seen or not (meta.get("grade") or meta.get("locked")):
            continue
        position = 0
        for previous in reversed(order[:k]):
            hit = [i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == previous]
            if hit:
                position = hit[0] + 1
                break
        nb.cells.insert(position, json.loads(json.dumps(original), object_hook=nbformat.NotebookNode))
        seen.add(grade_id)
        notes.append(f"the locked cell {grade_id} was missing from the notebook: restored")
    if not notes:
        return notes
    nb.nbformat_minor = max(nb.get("nbformat_minor", 4), 5)
    for cell in nb.cells:  # fresh unique cell ids (a restored cell would repeat one)
        cell["id"] = nbformat.corpus.words.generate_corpus_id()
    try:
        nbformat.write(nb, path)
    except Exception as error:
        notes.append(f"the repaired notebook could not be written: {type(error).__name__}")
    return notes


def _plain_feedback(student: str, lab: str, results: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(c['check'])}</td><td>{c['points']:g}/{c['max_points']:g}</td>"
                   f"<td>{html.escape(c['message'])}</td></tr>" for c in results["checks"])
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in results.get("notes", []))
    return (f"<html><body><h1>{html.escape(lab)}: {html.escape(student)}</h1>{notes}"
            f"<table><tr><th>check</th><th>points</th><th>message</th></tr>{rows}</table></body></html>")


def merge(gradebook: Path, lab: str, base: Path, results: dict) -> None:
    """Write one student's trusted cell grades into the main gradebook (sequentially).

    nbgrader's own ``add_submission`` emits SQLAlchemy "not in session" warnings (objects built
    before ``db.add``); they are harmless and silenced here.
    """
    import warnings

    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)
        with Gradebook(f"sqlite:///{gradebook}", "metric-lab") as gb:
            gb.update_or_create_student(results["student"])
            submission = gb.update_or_create_submission(lab, results["student"])
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    cell = results["cells"].get(grade.name)
                    if cell is not None:  # the trusted result, whatever was there before
                        grade.auto_score = min(float(cell["points"]), float(grade.max_score))
                        grade.manual_score = None
                        grade.needs_manual_grade = False
            gb.db.commit()


def _init_gradebook(gradebook: Path, base: Path) -> None:
    if not gradebook.exists():
        shutil.copy(base / "gradebook.db", gradebook)


def _start_warming_data() -> subprocess.Popen:
    """Stage and decode the datasets on the trusted side (sandboxed code reads them read-only), in a
    child process: decoding in this one would start torch's OpenMP threads, whose state the pool's
    forked workers inherit broken (their first parallel operation then waits forever)."""
    return subprocess.Popen([sys.executable, "-c", "from labtools.data import warm_cache; warm_cache()"],
                            env=tool_env(PYTHONPATH=str(REPO)), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_data(warming: subprocess.Popen) -> None:
    _, errors = warming.communicate()
    if warming.returncode:  # the checks that need the data say so, as grader errors
        last = (errors.strip().splitlines() or ["no message"])[-1]
        print(f"WARNING: the data cache could not be prepared: {last}", file=sys.stderr)


def histogram(totals: list[float], maximum: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(totals, bins=max(5, min(20, len(totals))), range=(0, maximum), color="tab:blue")
    ax.set_xlabel(f"points (of {maximum:g})")
    ax.set_ylabel("students")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def grade(lab: str, submissions: Path, out: Path, jobs: int = 1, course: Path = COURSE,
          time_limit: float = 600.0, keep_work: bool = False, sandboxed: bool = True,
          similarity: bool = True) -> list[dict]:
    from labtools.checks.registry import TEST_CELL_POINTS
    from labtools.sandbox import SandboxUnavailable, require

    nbrun.preload()  # before the pool's workers fork: they fork nbgrader's runs in turn
    out, submissions, course = Path(out).resolve(), Path(submissions).resolve(), Path(course).resolve()
    if lab not in TEST_CELL_POINTS:
        raise SystemExit(f"unknown lab {lab!r}")
    if sandboxed:
        try:
            require()
        except SandboxUnavailable as error:
            raise SystemExit(f"cannot grade: the OS sandbox for student code is not available: {error}. "
                             "Grading without it (--no-sandbox) runs every submission with your rights.")
    if not (course / "source" / lab / f"{lab}.ipynb").is_file():
        raise SystemExit(f"no source notebook {course / 'source' / lab / (lab + '.ipynb')}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "work").mkdir(exist_ok=True)
    warming = _start_warming_data()
    base = prepare_base(lab, course, out)
    _wait_for_data(warming)
    items = collect(lab, submissions, Path(tempfile.mkdtemp(prefix="collect-", dir=out / "work")))
    gradebook = out / "gradebook.db"
    _init_gradebook(gradebook, base)
    results: list[dict] = []
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(grade_one, lab, s, str(f), str(nb) if nb else None, notes, str(base), str(out),
                               time_limit, keep_work, sandboxed): s for s, f, notes, nb in items}
        for future in as_completed(futures):
            student = futures[future]
            try:
                result = future.result()
            except Exception as error:  # the grader's own failure for this student
                from autograder.grading.trusted import _unreadable

                result = _unreadable(lab, Path("/nonexistent"), f"grader error: {type(error).__name__}: {error}",
                                     grader_error=True)
                result.update(student=student, seconds=0.0, sandboxed=sandboxed,
                              notes=[] if sandboxed else [NOT_SANDBOXED])
            merge(gradebook, lab, base, result)
            results.append(result)
    results.sort(key=lambda r: r["student"])
    maximum = sum(TEST_CELL_POINTS[lab].values())
    with open(out / "grades.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "lab", "check", "points", "max_points", "message", "sandbox"])
        where = "bubblewrap" if sandboxed else "not sandboxed"
        for r in results:
            for c in r["checks"]:
                writer.writerow([r["student"], lab, c["check"], f"{c['points']:g}", f"{c['max_points']:g}",
                                 c["message"], where])
            total = sum(c["points"] for c in r["checks"])
            writer.writerow([r["student"], lab, "TOTAL", f"{total:g}", f"{maximum:g}", "; ".join(r.get("notes", [])),
                             where])
    totals = [sum(c["points"] for c in r["checks"]) for r in results]
    histogram(totals, maximum, out / "histogram.png")
    print(f"{'student':24} {'points':>8}  seconds" + ("" if sandboxed else "  (NOT SANDBOXED)"))
    for r, total in zip(results, totals):
        print(f"{r['student'][:24]:24} {total:8.2f}  {r.get('seconds', 0):.1f}" + ("" if sandboxed else
                                                                                     "  not sandboxed"))
    print(f"{len(results)} submission(s) of {lab} graded; results in {out}")
    failed = [(r["student"], c) for r in results for c in r["checks"] if c.get("grader_error")]
    if failed:
        student, check = failed[0]
        print(f"WARNING: the grader could not run {len(failed)} check(s) (their zeros are not the students'); "
              f"fix the cause and grade again. First: {student}, {check['check']}: {check['message']}",
              file=sys.stderr)
    if similarity:  # flags only: after the grades are written, it changes none of them
        from autograder.similarity import report

        report(lab, items, out, base / "release" / lab / f"{lab}.ipynb")
    return results
