"""A course of its own for a test: ``autograder.hub.up`` in a state folder in ``/tmp``, taken down with ``--purge``.

Shared by tests/test_course_hub.py (the hub's APIs) and tests/test_browser_course.py (a real browser):
:func:`skip_reason` says why the course cannot come up here, :func:`running_course` brings one up with
the test's own logins (a course someone runs on the machine is never touched) and always takes it
down, users and homes included; :func:`login`, :func:`start_server`, :func:`wait_ready` and
:func:`xsrf` drive it through :mod:`autograder.hub.client`, as a browser would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from autograder.hub import CourseError, client, down, up
from autograder.hub import processes
from autograder.hub.layout import PROXY


def skip_reason() -> str | None:
    """Why a course cannot be brought up on this machine, or None."""
    if sys.platform != "linux":
        return "the course runs on Linux only (system users, /proc)"
    if os.geteuid() != 0:
        return "bringing the course up needs root: it creates system users (nbgrader's exchange tells students apart by Unix identity)"
    if not PROXY.exists():
        return f"the hub's proxy is not installed ({PROXY}): make course-proxy (needs npm)"
    if shutil.which("useradd") is None:
        return "useradd is missing (the course creates system users)"
    return None


@contextlib.contextmanager
def running_course(students: int, instructor: str, student_prefix: str):
    """A course up on a free port, in a state folder of its own in /tmp (outside the repository, which
    tests/test_hostile.py checks byte for byte); ``down --purge`` at the end, also when the test fails."""
    state = Path(tempfile.mkdtemp(prefix="metric-lab-course-test-"))
    os.chmod(state, 0o755)  # the users reach the exchange inside it
    try:
        yield up(students=students, port=processes.free_port(), state_dir=state, instructor=instructor,
                 student_prefix=student_prefix)
    finally:
        try:
            down(state, purge=True)
        except CourseError as error:  # pragma: no cover - the test of down says what still runs
            print(error)
        shutil.rmtree(state, ignore_errors=True)


def login(course, user: str, password: str | None = None) -> client.Session:
    """A session logged in through the hub's login form (:func:`autograder.hub.client.login`); its
    ``login_status`` is the answer's status (302 when the login worked)."""
    session = client.login(course.url, user, password or course.passwords[user])
    session.login_status = session.status
    return session


def start_server(course, session: client.Session, user: str) -> None:
    """Ask the hub's REST API to start ``user``'s server (with the session's cookie and _xsrf)."""
    assert session.user == user
    client.start_server(session)


def wait_ready(course, session: client.Session, user: str, timeout: float = 120) -> dict:
    assert session.user == user
    try:
        return client.wait_ready(session, timeout)
    except RuntimeError as error:
        raise AssertionError(f"{error}; hub log:\n{hub_log(course)}") from None


def hub_log(course, chars: int = 3000) -> str:
    """The end of the course's hub log (the proxy's and the servers' logs go there too)."""
    try:
        return Path(course.log).read_text(errors="replace")[-chars:]
    except OSError as error:
        return f"(no hub log: {error})"


def page_config(html: str) -> dict:
    return json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', html, re.S).group(1))


def xsrf(session: client.Session, user: str) -> dict:
    """The header a POST to ``user``'s server needs: the _xsrf cookie the server set."""
    assert session.user == user
    return session.server_headers()
