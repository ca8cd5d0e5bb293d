"""A user of the course, over HTTP: log in, start the server, fetch and submit through the exchange.

What a browser does, with ``requests``: the hub's login form (JupyterHub wants the form's ``_xsrf``
back), its REST API to start the user's server, the OAuth round trip that gives the session the
server's cookie, and the Assignment List's server API (``/user/<name>/assignments``) that the
student's JupyterLab panel calls. The tests of the course and ``benchmarks/course.py`` drive the
course through these functions.
"""

from __future__ import annotations

import re
import time

import requests


class Session(requests.Session):
    """A logged-in user's session: ``url`` (the hub's, ending in /), ``user``, the login's ``status``."""

    url: str
    user: str
    status: int

    def hub_headers(self) -> dict[str, str]:
        return {"X-XSRFToken": self.cookies.get("_xsrf", path="/hub/") or ""}

    def server_headers(self) -> dict[str, str]:
        return {"X-XSRFToken": self.cookies.get("_xsrf", path=f"/user/{self.user}/") or ""}

    @property
    def server(self) -> str:
        """The URL of the user's server (no trailing slash)."""
        return f"{self.url}user/{self.user}"


def login(url: str, user: str, password: str, timeout: float = 30) -> Session:
    """A session that posted ``user``'s login form; ``status`` is 302 when the hub let the user in."""
    session = Session()
    session.url, session.user = url, user
    page = session.get(url + "hub/login", timeout=timeout)
    token = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    answer = session.post(url + "hub/login", timeout=timeout, allow_redirects=False,
                          data={"username": user, "password": password, "_xsrf": token})
    session.status = answer.status_code
    return session


def start_server(session: Session, timeout: float = 30) -> None:
    """Ask the hub's REST API to start the user's server (201: started, 202: starting)."""
    answer = session.post(f"{session.url}hub/api/users/{session.user}/server", timeout=timeout,
                          headers=session.hub_headers())
    if answer.status_code not in (201, 202):
        raise RuntimeError(f"{session.user}'s server did not start: HTTP {answer.status_code} {answer.text[:500]}")


def wait_ready(session: Session, timeout: float = 120) -> dict:
    """The user's server model once the hub says it is ready; RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = session.get(f"{session.url}hub/api/users/{session.user}", timeout=30,
                            headers=session.hub_headers()).json()
        server = model.get("servers", {}).get("")
        if server and server.get("ready"):
            return server
        time.sleep(0.5)
    raise RuntimeError(f"{session.user}'s server is not ready after {timeout} s")


def open_lab(session: Session, timeout: float = 60) -> str:
    """Open the user's JupyterLab page (the OAuth round trip sets the server's cookie); its HTML."""
    page = session.get(f"{session.server}/lab", timeout=timeout)
    if page.status_code != 200 or not page.url.endswith(f"/user/{session.user}/lab"):
        raise RuntimeError(f"{session.user}'s JupyterLab did not open: HTTP {page.status_code} at {page.url}")
    return page.text


def assignments(session: Session, course_id: str, timeout: float = 60) -> list[dict]:
    """The Assignment List's view of the course: released, fetched and submitted assignments."""
    answer = session.get(f"{session.server}/assignments", params={"course_id": course_id}, timeout=timeout).json()
    if not answer.get("success"):
        raise RuntimeError(f"{session.user} could not list the assignments: {answer}")
    return answer["value"]


def _assignment_action(session: Session, action: str, course_id: str, assignment: str, timeout: float) -> dict:
    answer = session.post(f"{session.server}/assignments/{action}", timeout=timeout, headers=session.server_headers(),
                          data={"course_id": course_id, "assignment_id": assignment}).json()
    if not answer.get("success"):
        raise RuntimeError(f"{session.user} could not {action} {assignment}: {answer}")
    return answer


def fetch(session: Session, course_id: str, assignment: str, timeout: float = 60) -> dict:
    """Fetch ``assignment`` from the exchange into the user's home, as the Assignment List's Fetch does."""
    return _assignment_action(session, "fetch", course_id, assignment, timeout)


def submit(session: Session, course_id: str, assignment: str, timeout: float = 60) -> dict:
    """Submit the user's copy of ``assignment`` to the exchange, as the Assignment List's Submit does."""
    return _assignment_action(session, "submit", course_id, assignment, timeout)


def put_notebook(session: Session, path: str, notebook: dict, timeout: float = 60) -> None:
    """Write ``notebook`` (nbformat JSON) at ``path`` in the user's home through the contents API."""
    answer = session.put(f"{session.server}/api/contents/{path}", headers=session.server_headers(), timeout=timeout,
                         json={"type": "notebook", "format": "json", "content": notebook})
    if answer.status_code not in (200, 201):
        raise RuntimeError(f"{session.user} could not save {path}: HTTP {answer.status_code} {answer.text[:500]}")


def collect(session: Session, assignment: str, timeout: float = 300) -> dict:
    """formgrader's Collect: the instructor copies the exchange's submissions of ``assignment`` into the course."""
    answer = session.post(f"{session.server}/formgrader/api/assignment/{assignment}/collect", timeout=timeout,
                          headers=session.server_headers()).json()
    if not answer.get("success"):
        raise RuntimeError(f"formgrader could not collect {assignment}: {answer}")
    return answer
