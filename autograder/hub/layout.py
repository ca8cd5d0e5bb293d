"""Names and places of the one-machine course: its users, its group, its ports, its state folder.

Everything `python -m autograder course up` writes outside the users' homes lies in one state folder
(default ``.hub/course/`` in the repository, ignored by git)::

    <state>/course.json      what ``up`` set up: URL, ports, users, paths (:func:`autograder.hub.status` reads it)
    <state>/logins.json      the demo passwords, readable by root only
    <state>/hub.pid          the hub's process id
    <state>/hub.log          the hub's log (the proxy's and the single-user servers' logs go there too)
    <state>/hub/             the hub's working folder: jupyterhub.sqlite, cookie secret, proxy pid file
    <state>/exchange/        nbgrader's exchange (world-writable with the sticky bit, as nbgrader requires)

The proxy (configurable-http-proxy, pinned in ``autograder/hub/package.json``) is installed by
``make course-proxy`` into ``.hub/node_modules/``. The users are real system users (nbgrader's
exchange tells students apart by Unix identity), with their homes in ``/home``: the instructor's
course is ``~instructor/course``, each user's Jupyter configuration ``~/.jupyter``.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from autograder.paths import COURSE_DIR, REPO

#: nbgrader's course id (the same as autograder/course/nbgrader_config.py's).
COURSE_ID = "metric-lab"
#: The system group of the course's users (their access to the interpreter is granted to it).
GROUP = "metric-lab-course"
#: The system group of the students only: the repository's instructor side is closed to it
#: (:mod:`autograder.hub.boundary`); the instructor is not in it.
STUDENTS_GROUP = "metric-lab-students"
#: The instructor's login; the students' are :func:`student_names`.
INSTRUCTOR = "instructor"
#: The comment (GECOS field) of every system user the course created: a user without it is never taken over.
MARKER = "metric-lab demo course"
DEFAULT_PORT = 8765
DEFAULT_STUDENTS = 3
MAX_STUDENTS = 99
#: Where the users' homes are created.
HOME_BASE = Path("/home")

#: The kit's git-ignored folder for the course: the proxy's node_modules and the default state folder.
HUB_DIR = REPO / ".hub"
PROXY = HUB_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
DEFAULT_STATE = HUB_DIR / "course"
#: The hub's configuration file (reads ``<state>/course.json``, named by :data:`STATE_ENV`).
HUB_CONFIG = Path(__file__).with_name("jupyterhub_config.py")
STATE_ENV = "METRIC_LAB_COURSE_STATE"


#: The students' logins are this prefix and a two-digit number.
STUDENT_PREFIX = "student"
#: What a login may be (a valid system user name and JupyterHub user name).
LOGIN = re.compile(r"^[a-z][a-z0-9-]{0,23}$")


def student_names(count: int, prefix: str = STUDENT_PREFIX) -> list[str]:
    """``["student01", ..., "studentNN"]``: the logins of ``count`` students (``prefix`` + number)."""
    return [f"{prefix}{i:02d}" for i in range(1, count + 1)]


def venv_bin() -> Path:
    """The scripts folder of the Python that runs the kit (``.venv/bin`` under make): the users' Python."""
    return Path(sys.prefix) / "bin"


def course_labs() -> list[str]:
    """The labs of the kit's course: ``autograder/course/source/<lab>/<lab>.ipynb``, as
    ``python -m autograder.notebooks build`` writes them."""
    source = COURSE_DIR / "source"
    return sorted(p.name for p in source.iterdir() if (p / f"{p.name}.ipynb").is_file())


def default_state() -> Path:
    """The state folder: ``$METRIC_LAB_COURSE_STATE`` when set, else ``.hub/course`` in the repository."""
    return Path(os.environ.get(STATE_ENV) or DEFAULT_STATE).resolve()


@dataclass(frozen=True)
class StateDir:
    """The files of one course's state folder (see the module's docstring)."""

    root: Path

    @property
    def course_json(self) -> Path:
        return self.root / "course.json"

    @property
    def logins(self) -> Path:
        return self.root / "logins.json"

    @property
    def hub_pid(self) -> Path:
        return self.root / "hub.pid"

    @property
    def hub_log(self) -> Path:
        return self.root / "hub.log"

    @property
    def hub_dir(self) -> Path:
        return self.root / "hub"

    @property
    def proxy_pid(self) -> Path:
        return self.hub_dir / "jupyterhub-proxy.pid"

    @property
    def exchange(self) -> Path:
        return self.root / "exchange"


def home_of(user: str) -> Path:
    return HOME_BASE / user


def course_root(instructor: str = INSTRUCTOR) -> Path:
    """The instructor's nbgrader course folder (formgrader wants it under the instructor's server root, the home)."""
    return home_of(instructor) / "course"
