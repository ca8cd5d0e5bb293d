"""The demo course's login: one generated password per user, read from a root-only JSON file.

Unlike a shared password (JupyterHub's DummyAuthenticator or SharedPasswordAuthenticator), a
student cannot log in as another student or as the instructor. Still a demo: a real course uses its
institution's authenticator (README, "Run the course"; deploy/ for Kubernetes).
"""

from __future__ import annotations

import json
from pathlib import Path
from secrets import compare_digest

from jupyterhub.auth import Authenticator
from traitlets import Unicode


class CoursePasswordAuthenticator(Authenticator):
    """Log in with the password ``passwords_file`` holds for the user (``{"user": "password"}``).

    The file is read at each login, so that passwords added by a later ``course up`` count at once.
    Who may log in at all is ``Authenticator.allowed_users``.
    """

    passwords_file = Unicode(help="JSON file {username: password}, readable by the hub only").tag(config=True)

    def _passwords(self) -> dict:
        path = Path(self.passwords_file)
        return json.loads(path.read_text()) if path.is_file() else {}

    async def authenticate(self, handler, data):
        """The user's name when the password matches, else None."""
        username, password = data.get("username", ""), data.get("password", "")
        expected = self._passwords().get(username)
        if expected and compare_digest(expected.encode(), password.encode()):
            return username
        self.log.warning("Failed login for %s", username)
        return None
