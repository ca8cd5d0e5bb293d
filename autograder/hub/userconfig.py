"""Each user's Jupyter configuration (``~/.jupyter``): nbgrader's course and exchange, and which tools show.

All users share the kit's virtual environment, where nbgrader enables every extension (instructor
ones included) at the sys-prefix level; per-user configuration overrides it, as nbgrader 0.9's docs
describe for disabling the instructor tools: the students' ``~/.jupyter/jupyter_server_config.json``
turns off the formgrader and course-list server extensions, and their
``~/.jupyter/labconfig/page_config.json`` the formgrader, create-assignment and course-list
JupyterLab plugins (what ``jupyter labextension disable --level=user`` writes). The students keep the
Assignment List (fetch, submit, fetch feedback) and Validate. The files are rewritten by every
``course up``; other keys in them are kept.
"""

from __future__ import annotations

import json
from pathlib import Path

from autograder.hub.accounts import chown_tree
from autograder.hub.layout import COURSE_ID

#: What students do not get (server extensions, JupyterLab plugins).
INSTRUCTOR_SERVER_EXTENSIONS = ("nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.course_list")
INSTRUCTOR_LAB_PLUGINS = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
                          "@jupyter/nbgrader:course-list")
HEADER = "# Written by `python -m autograder course up` (autograder/hub/userconfig.py); rewritten at each start.\n"


def nbgrader_config(exchange: Path, course_root: Path | None) -> str:
    """The text of a user's ``nbgrader_config.py``: the course id and the exchange, and for the
    instructor the course folder."""
    lines = [HEADER, "c = get_config()  # noqa: F821 (provided by nbgrader)",
             f"c.CourseDirectory.course_id = {COURSE_ID!r}", f"c.Exchange.root = {str(exchange)!r}"]
    if course_root is not None:
        lines.append(f"c.CourseDirectory.root = {str(course_root)!r}")
    return "\n".join(lines) + "\n"


def _merge_json(path: Path, update) -> None:
    data = json.loads(path.read_text()) if path.is_file() else {}
    update(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_user_config(user: str, home: Path, exchange: Path, instructor: bool, course_root: Path | None = None) -> Path:
    """Write ``home/.jupyter`` for ``user`` (owned by the user); returns the folder.

    A student gets the instructor's tools switched off; the instructor gets them switched on
    (in case the same login was a student before) and ``CourseDirectory.root = course_root``.
    """
    config = home / ".jupyter"
    config.mkdir(parents=True, exist_ok=True)
    (config / "nbgrader_config.py").write_text(nbgrader_config(exchange, course_root if instructor else None))

    def server(data):
        extensions = data.setdefault("ServerApp", {}).setdefault("jpserver_extensions", {})
        for name in INSTRUCTOR_SERVER_EXTENSIONS:
            extensions[name] = bool(instructor)

    def lab(data):
        disabled = data.setdefault("disabledExtensions", {})
        for name in INSTRUCTOR_LAB_PLUGINS:
            if instructor:
                disabled.pop(name, None)
            else:
                disabled[name] = True

    _merge_json(config / "jupyter_server_config.json", server)
    _merge_json(config / "labconfig" / "page_config.json", lab)
    chown_tree(config, user)
    return config
