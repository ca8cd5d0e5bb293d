"""The course on one machine: JupyterHub, the instructor's nbgrader course and the students' logins.

``python -m autograder course up|down|status`` (``make course``, ``make course-down``) is
:mod:`autograder.hub.cli`; a test or a benchmark calls the functions here:

- :func:`up` ``(students=3, port=8765, state_dir=None, data=None) -> Course``: brings the course up
  (as root) and returns its URL, logins and passwords, exchange, course folder, the labs' points;
- :func:`down` ``(state_dir=None, purge=False) -> list[str]``: stops everything, returns what it stopped;
- :func:`status` ``(state_dir=None) -> Course | None``: the running course, or None.

Modules: :mod:`.layout` (names, ports, the state folder), :mod:`.accounts` (system users, passwords,
access to the kit's Python), :mod:`.boundary` (the students kept to the student side of the repository),
:mod:`.userconfig` (each user's ``~/.jupyter``), :mod:`.course` and
:mod:`.nbgrader_setup` (the instructor's nbgrader course), :mod:`.processes` (starting and stopping),
:mod:`.service` (up, down, status), :mod:`.auth` (the demo login) and ``jupyterhub_config.py`` (the
hub's configuration). Errors are :class:`CourseError`, whose message is for the user.
"""

from autograder.hub.errors import CourseError
from autograder.hub.service import Course, down, status, up

__all__ = ["Course", "CourseError", "down", "status", "up"]
