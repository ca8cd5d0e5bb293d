"""The instructor's nbgrader course: ``~instructor/course`` with the kit's labs, generated and released.

The course folder is made once, from the kit's course (``autograder/course/``: its
``nbgrader_config.py`` and each lab's ``source/<lab>/`` as ``python -m autograder.notebooks build``
writes them); a later ``up`` keeps what the instructor changed there and only adds a lab the folder
lacks. Then, as the instructor, :mod:`autograder.hub.nbgrader_setup` puts the students in the
gradebook and generates and releases each lab not yet in the exchange.
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


def prepare_course_dir(root: Path, labs: list[str], instructor: str = INSTRUCTOR) -> list[str]:
    """Create the course folder ``root`` (owned by the instructor) with the labs it lacks; returns those added."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "nbgrader_config.py").exists():
        shutil.copy2(COURSE_DIR / "nbgrader_config.py", root / "nbgrader_config.py")
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
