"""The instructor's nbgrader course: ``~instructor/course`` with the kit's labs, generated and released.

The course folder is made once, from the kit's course (``autograder/course/``: its
``nbgrader_config.py`` and each lab's ``source/<lab>/`` as ``python -m autograder.notebooks build``
writes them); a later ``up`` keeps what the instructor changed there and only adds a lab the folder
lacks. Then, as the instructor, :mod:`autograder.hub.nbgrader_setup` puts the students in the
gradebook and generates and releases each lab not yet in the exchange.

The course's ``nbgrader_config.py`` gets the kit's autograde block (:func:`write_course_config`, at
every ``up``, the rest of the file kept): ``nbgrader autograde`` there, and formgrader's Autograde
button (which runs it in the instructor's server), run the kit's trusted pipeline
(:func:`autograder.grading.run.course_config`): the submission's metadata repaired, the trusted
checks in the sandboxed engine, the notebook in the sandboxed kernel, the test cells' points from
the trusted results only, the graded deliverables hidden; the autograded notebooks and the grades
stay where formgrader reads them (``autograded/``, the course's gradebook).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from autograder.hub.accounts import chown_tree, runuser
from autograder.hub.errors import CourseError
from autograder.hub.layout import INSTRUCTOR
from autograder.paths import COURSE_DIR, REPO


#: The lines around the kit's block in the course's ``nbgrader_config.py``.
AUTOGRADE_BEGIN = "# >>> metric-lab autograde"
AUTOGRADE_END = "# <<< metric-lab autograde"
AUTOGRADE_BLOCK = f"""{AUTOGRADE_BEGIN}: written by `python -m autograder course up` (autograder/hub/course.py), rewritten at each up.
# nbgrader autograde, and formgrader's Autograde button, run the kit's trusted pipeline: the submission's
# nbgrader metadata repaired, the trusted checks in the sandboxed engine, the notebook in the sandboxed
# kernel, the test cells' points from the trusted results only (autograder.grading.run.course_config).
import os as _os

from autograder.grading.run import course_config as _course_config

c.merge(_course_config(_os.path.dirname(_os.path.abspath(__file__))))
{AUTOGRADE_END}
"""


def write_course_config(root: Path) -> Path:
    """The course's ``root/nbgrader_config.py``: the kit's when it has none, with the autograde block
    added (or replaced by this kit's); the rest of the file is kept. Returns its path."""
    path = root / "nbgrader_config.py"
    text = path.read_text() if path.is_file() else (COURSE_DIR / "nbgrader_config.py").read_text()
    if AUTOGRADE_BEGIN in text and AUTOGRADE_END in text:
        head, _, rest = text.partition(AUTOGRADE_BEGIN)
        tail = rest.partition(AUTOGRADE_END)[2].lstrip("\n")
        text = head + AUTOGRADE_BLOCK + tail
    else:
        text = text.rstrip("\n") + "\n\n" + AUTOGRADE_BLOCK
    path.write_text(text)
    return path


def prepare_course_dir(root: Path, labs: list[str], instructor: str = INSTRUCTOR) -> list[str]:
    """Create the course folder ``root`` (owned by the instructor) with the labs it lacks and the
    autograde block in its ``nbgrader_config.py`` (:func:`write_course_config`); returns the labs added."""
    root.mkdir(parents=True, exist_ok=True)
    write_course_config(root)
    added = []
    for lab in labs:
        target = root / "source" / lab
        if not (target / f"{lab}.ipynb").exists():
            shutil.copytree(COURSE_DIR / "source" / lab, target, dirs_exist_ok=True)
            added.append(lab)
    chown_tree(root, instructor)
    return added


def setup_course(root: Path, students: list[str], labs: list[str], python: Path, env: dict[str, str],
                 instructor: str = INSTRUCTOR) -> dict:
    """Run :mod:`autograder.hub.nbgrader_setup` as the instructor in ``root``; returns what it printed
    (``max_score`` per lab, the labs ``generated`` and ``released``)."""
    command = [runuser(), "-u", instructor, "--", str(python), "-m", "autograder.hub.nbgrader_setup",
               "--students", *students, "--labs", *labs]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, env={**env, "PYTHONPATH": str(REPO)})
    if result.returncode != 0:
        raise CourseError(f"setting up the nbgrader course in {root} as {instructor!r} failed:\n"
                          f"{(result.stderr or result.stdout).strip()[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
