"""JupyterHub's configuration of the one-machine course (``jupyterhub -f`` this file, as root).

It reads what ``python -m autograder course up`` wrote to ``$METRIC_LAB_COURSE_STATE/course.json``
(:mod:`autograder.hub.service`). For a real course, the three slots to replace are marked
REPLACE FOR A REAL COURSE: the authenticator, the spawner, the exchange (README, "Run the course").
"""

import json
import os
from pathlib import Path

c = get_config()  # noqa: F821 (provided by JupyterHub)

state = Path(os.environ["METRIC_LAB_COURSE_STATE"])
course = json.loads((state / "course.json").read_text())
users = [course["instructor"], *course["students"]]

# The hub: public on a loopback port; its own API and the proxy's API on two more loopback ports.
c.JupyterHub.bind_url = f"http://127.0.0.1:{course['port']}/"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{course['hub_port']}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{course['proxy_api_port']}"
c.ConfigurableHTTPProxy.command = [course["proxy"]]
c.ConfigurableHTTPProxy.pid_file = str(state / "hub" / "jupyterhub-proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{state / 'hub' / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "hub" / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(state / "hub.pid")
# Stopping the hub stops the proxy and every single-user server (`course down` relies on it).
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True

# REPLACE FOR A REAL COURSE (1/3): the login. Here one generated password per user, from a root-only
# file; a course uses its institution's (e.g. oauthenticator's GenericOAuthenticator, LTI13Authenticator).
c.JupyterHub.authenticator_class = "autograder.hub.auth.CoursePasswordAuthenticator"
c.CoursePasswordAuthenticator.passwords_file = str(state / "logins.json")
c.Authenticator.allowed_users = set(users)
c.Authenticator.admin_users = {course["instructor"]}

# REPLACE FOR A REAL COURSE (2/3): where the users' servers run. Here each is a local process of its
# system user (hence root), running the kit's virtual environment; a course on Kubernetes uses KubeSpawner
# (deploy/), one elsewhere e.g. SystemdSpawner or DockerSpawner.
c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
c.Spawner.cmd = [str(Path(course["python_bin"]) / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
environment = {
    # the kit's Python first: a terminal's nbgrader, python and pip are the kit's
    "PATH": f"{course['python_bin']}:/usr/local/bin:/usr/bin:/bin",
    # threads of the students' kernels: one machine shared by the class
    "OMP_NUM_THREADS": "1",
}
if course.get("data"):
    environment["LABTOOLS_DATA"] = course["data"]
c.Spawner.environment = environment

# REPLACE FOR A REAL COURSE (3/3): nbgrader's exchange. It is not configured here but in each user's
# ~/.jupyter/nbgrader_config.py (autograder/hub/userconfig.py): c.Exchange.root = course["exchange"],
# a folder all users can write (mode 1777), on one machine; a shared volume on several (deploy/).
