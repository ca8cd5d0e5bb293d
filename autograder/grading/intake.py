"""Taking submissions in: each student's notebook and files, as the grader may read and nbgrader process them.

:func:`collect` finds the submissions of a class in nbgrader's ``submitted/<student>/<lab>/``
layout (or its parent), a folder of student folders, a zip of either, or an LMS export (Moodle,
Canvas), within :data:`MAX_MEMBER_BYTES` and :data:`MAX_ARCHIVE_BYTES`. :func:`copy_submission`
copies one student's files into a course copy without their symbolic links, and
:func:`repair_notebook` puts back the nbgrader metadata the release gave its notebook. Submissions
are untrusted: nothing here runs them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from pathlib import Path

#: One submission: (student, folder with the notebook and its files, notes for the student, notebook or None).
Submission = tuple[str, Path, list[str], Path | None]

#: Limits on an LMS archive: a bigger member or a bigger whole is refused, not unpacked.
MAX_MEMBER_BYTES = 500_000_000
MAX_ARCHIVE_BYTES = 5_000_000_000
#: Moodle names each student's folder ``Full Name_<id>_assignsubmission_file_``.
MOODLE_FOLDER = re.compile(r"^(?P<student>.+?)_\d+_assignsubmission_[a-z]+_?$")
#: Canvas names each file ``<login>_[LATE_]<id>_<id>_<original name>`` (``-1`` before a resubmission's suffix).
CANVAS_FILE = re.compile(r"^(?P<student>[^_]+)_(?:LATE_)?\d+_\d+_(?P<name>.+)$")


def safe_name(name: str) -> str:
    """``name`` as a folder name and an nbgrader student id."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80] or "student"


def collect(lab: str, submissions: Path, scratch: Path) -> list[Submission]:
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


def _collect_lms(lab: str, root: Path, scratch: Path) -> list[Submission]:
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
        folder = scratch / "lms" / safe_name(student)
        for source, name in members:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, folder / name)
        found.append(_one(lab, student, folder))
    return found


def _one(lab: str, student: str, folder: Path) -> Submission:
    """The notebook of one student's folder: ``<lab>.ipynb``, else the only notebook there."""
    notes = []
    notebooks = sorted(folder.rglob("*.ipynb"))
    notebooks = [n for n in notebooks if ".ipynb_checkpoints" not in n.parts]
    exact = [n for n in notebooks if n.name == f"{lab}.ipynb"]
    if exact:
        return safe_name(student), exact[0].parent, notes, exact[0]
    if len(notebooks) == 1:
        notes.append(f"the notebook was named {notebooks[0].name}, not {lab}.ipynb: graded anyway")
        return safe_name(student), notebooks[0].parent, notes, notebooks[0]
    notes.append("no notebook found" if not notebooks else f"several notebooks and none named {lab}.ipynb")
    return safe_name(student), folder, notes, None


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
