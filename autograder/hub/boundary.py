"""The release boundary on the demo hub: the students' users may read the student side only.

The students' servers run on the machine that holds the repository, as Unix users of their own.
Without this module they could read all of it: reference solutions, hidden checks and reference
outputs (``autograder/labs/``), the source notebooks (``autograder/course/``), the mistakes tables
built from the reference (``tests/``), the history (``.git``) and the instructor's copy of a graded
deliverable (``models/mnist_triplet.pt``). ``course up`` closes it with POSIX ACL entries for the
students' group :data:`layout.STUDENTS_GROUP` (the instructor is not in it: full access):

- what the students may read is derived, not listed here: what the student bundle ships
  (:data:`autograder.release.INCLUDE`: ``notebooks/``, ``labtools/``, ``models/``, ...) less the
  graded deliverables (:func:`autograder.release.deliverable_excluded`), and what their processes
  run from (the kit's virtual environment, the exchange, the data root) where these lie in the
  repository;
- every other entry at the top of the repository gets ``g:<students>:---`` (no read, no list, no
  entry: a denial for the group overrides the "others" bits); a folder on the way to something the
  students need (``.hub/`` to ``.hub/course/exchange``) gets ``--x`` (enter, not list) and each of
  its other entries ``---``; each graded deliverable (and what training left beside it) gets ``---``;
- the grader's package folder (``autograder/``) is the one exception to "deny the folder": it gets
  ``--x`` with every entry in it ``---``. The shipped ``labtools.sandbox`` looks for the package
  (``importlib.util.find_spec("autograder")``, which with the editable install stats
  ``autograder/__init__.py``) to hide it from sandboxed code; in a folder the students cannot enter,
  that stat fails with PermissionError and would break their public checks. Entering lets the stat
  answer; reading anything there is still refused, so ``import autograder`` fails. Its
  ``__pycache__/`` is made before the entries are written, so that it is closed too.

The entries are recorded in ``course.json`` (``acl_students``); ``down --purge`` removes them.
Entries are per file: a file replaced while the course runs (written to another name and renamed
over) comes without its entry until the next ``course up``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from autograder.hub.accounts import remove_acl_entries
from autograder.hub.errors import CourseError
from autograder.hub.layout import DEFAULT_STATE, STUDENTS_GROUP, StateDir
from autograder.paths import REPO


@dataclass
class Plan:
    """The ACL entries of the students' group: folders they may enter only, paths they may not touch."""

    enter: list[Path] = field(default_factory=list)
    deny: list[Path] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return sorted({*self.enter, *self.deny})


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def plan_folder(root: Path, needed: Iterable[Path], enter_only: Iterable[Path] = ()) -> Plan:
    """The entries that keep the students to ``needed`` below ``root`` (``root`` itself is left as is).

    Each entry of ``root`` that is (or lies in) a needed path is left alone; a folder that holds a
    needed path, or one of ``enter_only``, may be entered, and the same rule applies to its entries;
    everything else is denied. Symbolic links are left alone (their targets are what counts).
    """
    root = root.resolve()
    needed = {Path(p).resolve() for p in needed}
    enter_only = {Path(p).resolve() for p in enter_only}
    plan = Plan()

    def visit(folder: Path) -> None:
        for entry in sorted(folder.iterdir()):
            if entry.is_symlink() or any(_inside(entry, n) for n in needed):
                continue
            if entry.is_dir() and (entry in enter_only or any(entry in n.parents for n in needed | enter_only)):
                plan.enter.append(entry)
                visit(entry)
            else:
                plan.deny.append(entry)

    if root.is_dir() and not any(_inside(root, n) for n in needed):
        visit(root)
    return plan


def grader_packages() -> list[Path]:
    """The folders of the grader's package ``autograder`` (the one this process runs)."""
    import autograder

    return [Path(p).resolve() for p in autograder.__path__]


def graded_deliverables(repo: Path = REPO) -> list[Path]:
    """The instructor's copies of the graded deliverables present in ``repo``, with the files training
    left beside them (``<name>.train.pt``, ``<name>.best.pt``): as the student bundle leaves them out."""
    from autograder.release import GRADED_DELIVERABLES, deliverable_excluded

    found = set()
    for deliverable in GRADED_DELIVERABLES:
        folder = repo / deliverable.rpartition("/")[0]
        if folder.is_dir():
            found |= {p for p in folder.iterdir()
                      if p.is_file() and deliverable_excluded(p.relative_to(repo).as_posix())}
    return sorted(found)


def student_side(venv: Path, state: StateDir, data: str | None, repo: Path = REPO) -> list[Path]:
    """What of ``repo`` the students need: what the student bundle ships, the virtual environment they
    run, the exchange (this course's and the default state folder's: another course may run from it),
    the data root."""
    from autograder.release import INCLUDE

    runtime = [venv, state.exchange, StateDir(DEFAULT_STATE).exchange, *([Path(data)] if data else [])]
    return [repo / name for name in INCLUDE] + [p for p in runtime if _inside(p.resolve(), repo.resolve())]


def plan(venv: Path, state: StateDir, data: str | None, repo: Path = REPO) -> Plan:
    """The whole plan: the repository, the graded deliverables, and the state folder's files when the
    state folder lies outside the repository (the hub's log and ``course.json``; the exchange stays open)."""
    needed = student_side(venv, state, data, repo)
    enter_only = [p for p in grader_packages() if _inside(p, repo.resolve())]
    for package in enter_only:
        # made now, so that it is denied with the rest: else the first run of the grader after `up` would
        # write the package's bytecode (a readable copy of its top modules) into a folder students can enter
        (package / "__pycache__").mkdir(exist_ok=True)
    whole = plan_folder(repo, needed, enter_only=enter_only)
    denied_folders = [p for p in whole.deny if p.is_dir()]
    whole.deny += [p for p in graded_deliverables(repo) if not any(_inside(p, d) for d in denied_folders)]
    if not _inside(state.root.resolve(), repo.resolve()):
        private = [state.course_json, state.hub_log, state.logins, state.hub_dir]
        whole.deny += [p for p in private if p.exists()]
    return whole


def _setfacl() -> str:
    found = shutil.which("setfacl")
    if found is None:
        raise CourseError("the demo course keeps its students out of the instructor's side of the repository "
                          "(reference solutions, hidden checks, .git) with POSIX ACLs, which needs `setfacl`: "
                          "install it (apt-get install acl).")
    return found


def _setfacl_run(args: list[str], paths: list[Path]) -> None:
    if not paths:
        return
    result = subprocess.run([_setfacl(), *args, "--", *map(str, paths)], capture_output=True, text=True)
    if result.returncode != 0:
        raise CourseError(f"`setfacl {' '.join(args)}` on {len(paths)} paths of the repository failed (does its "
                          f"file system support POSIX ACLs?): {(result.stderr or result.stdout).strip()[-1500:]}")


def close(the_plan: Plan) -> list[str]:
    """Write the plan's entries; returns the paths changed (for ``course.json``)."""
    _setfacl_run(["-m", f"g:{STUDENTS_GROUP}:--x"], the_plan.enter)
    _setfacl_run(["-m", f"g:{STUDENTS_GROUP}:---"], the_plan.deny)
    return [str(p) for p in the_plan.paths]


def reopen(paths: Iterable[str]) -> None:
    """Take back the entries :func:`close` wrote."""
    remove_acl_entries(STUDENTS_GROUP, paths)
