"""Bringing the one-machine course up and down: :func:`up`, :func:`down`, :func:`status`.

``up`` (as root) creates the users and their configuration, closes the repository's instructor side
to the students (:mod:`autograder.hub.boundary`), makes the instructor's nbgrader course with the labs
generated and released, writes ``<state>/course.json`` and starts JupyterHub (which starts the
proxy); it returns a :class:`Course`. ``down`` stops the hub, which stops the proxy and every
single-user server, then stops whatever of them still runs and checks that nothing does.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from autograder.hub import accounts, boundary, processes
from autograder.hub.course import prepare_course_dir, setup_course
from autograder.hub.errors import CourseError
from autograder.hub.layout import (COURSE_ID, DEFAULT_PORT, DEFAULT_STUDENTS, GROUP, HUB_CONFIG, HUB_DIR, INSTRUCTOR,
                                   MAX_STUDENTS, LOGIN, PROXY, STATE_ENV, STUDENT_PREFIX, STUDENTS_GROUP, StateDir,
                                   course_labs, course_root, default_state, home_of, student_names, venv_bin)
from autograder.hub.userconfig import write_user_config
from autograder.paths import REPO


@dataclass
class Course:
    """A running course, as ``up`` and ``status`` return it."""

    url: str                      # the hub's address, e.g. http://127.0.0.1:8765/
    port: int
    instructor: str
    students: list[str]
    passwords: dict[str, str]     # {login: demo password}
    state: str                    # the state folder
    exchange: str                 # nbgrader's exchange root
    course_root: str              # the instructor's nbgrader course folder
    course_id: str
    hub_pid: int
    log: str                      # the hub's log
    max_score: dict[str, float] = field(default_factory=dict)  # each released lab's points
    already_running: bool = False  # True when ``up`` found it running and changed nothing
    seconds: float = 0.0          # how long ``up`` took

    @property
    def users(self) -> list[str]:
        return [self.instructor, *self.students]


def _read_course(state: StateDir) -> dict | None:
    try:
        return json.loads(state.course_json.read_text())
    except (OSError, ValueError):
        return None


def _hub_pid(state: StateDir) -> int | None:
    """The hub's pid when it runs (its pid file names a living jupyterhub process), else None."""
    pid = processes.read_pid(state.hub_pid)
    if pid and processes.alive(pid) and "jupyterhub" in processes.cmdline(pid):
        return pid
    return None


def status(state_dir: Path | str | None = None) -> Course | None:
    """The course running from ``state_dir`` (default :func:`layout.default_state`), or None."""
    state = StateDir(Path(state_dir).resolve() if state_dir else default_state())
    info, pid = _read_course(state), _hub_pid(state)
    if info is None or pid is None:
        return None
    passwords = accounts.load_passwords(state.logins) if os.access(state.logins, os.R_OK) else {}
    users = [info["instructor"], *info["students"]]
    return Course(url=info["url"], port=info["port"], instructor=info["instructor"], students=info["students"],
                  passwords={u: passwords.get(u, "") for u in users}, state=str(state.root),
                  exchange=info["exchange"], course_root=info["course_root"], course_id=info["course_id"],
                  hub_pid=pid, log=str(state.hub_log), max_score=info.get("max_score", {}))


def _check_arguments(students: int, port: int) -> None:
    if not 1 <= students <= MAX_STUDENTS:
        raise CourseError(f"--students must be between 1 and {MAX_STUDENTS}, got {students}")
    if not 1024 <= port <= 65535:
        raise CourseError(f"--port must be between 1024 and 65535 (no root-only ports), got {port}")


def _course_user_processes(users: list[str]) -> list[int]:
    uids = {uid for uid in map(accounts.uid_of, users) if uid is not None}
    return processes.processes_of(uids) if uids else []


def up(students: int = DEFAULT_STUDENTS, port: int = DEFAULT_PORT, state_dir: Path | str | None = None,
       data: str | None = None, instructor: str = INSTRUCTOR, student_prefix: str = STUDENT_PREFIX) -> Course:
    """Bring the course up; return it (``already_running`` when it was, unchanged).

    ``students``: how many student logins (``student_prefix`` + 01, 02, ...); ``port``: the hub's
    loopback port; ``state_dir``: the state folder (default ``.hub/course``); ``data``: the users'
    ``LABTOOLS_DATA`` (default: this process's); ``instructor``: the instructor's login (a test uses
    logins of its own, so that it never touches a course someone runs on the machine). Raises
    :class:`CourseError` (not root, proxy missing, port in use, a login taken, ...).
    """
    started = time.monotonic()
    _check_arguments(students, port)
    names = student_names(students, student_prefix)
    bad = [name for name in (instructor, names[0], names[-1]) if not LOGIN.match(name)]
    if bad or instructor in names:
        raise CourseError(f"logins must be lower-case letters, digits and '-', starting with a letter (at most 24), "
                          f"the instructor's apart from the students': got {bad or [instructor]}")
    accounts.require_root()
    state = StateDir(Path(state_dir).resolve() if state_dir else default_state())
    running = status(state.root)
    if running is not None:
        running.already_running = True
        return running
    stale_proxy = processes.read_pid(state.proxy_pid)  # a hub that died leaves its proxy (on our port) behind
    if stale_proxy and processes.alive(stale_proxy) and "configurable-http-proxy" in processes.cmdline(stale_proxy):
        processes.terminate([stale_proxy], grace=5)
    if processes.port_in_use(port):
        raise CourseError(f"port {port} is in use on 127.0.0.1: choose another, e.g. `make course PORT={port + 1}` "
                          f"or `python -m autograder course up --port {port + 1}`.")
    if not PROXY.exists():
        raise CourseError(f"the proxy (configurable-http-proxy) is not installed at {PROXY}: run `make course-proxy` "
                          f"(npm install into .hub/, needs node and npm).")
    users = [instructor, *names]
    leftover = _course_user_processes(users)
    if leftover:
        uid_names = {accounts.uid_of(u): u for u in users}
        running = ", ".join(_describe(pid, uid_names) for pid in leftover[:5])
        raise CourseError(f"processes of the course's users still run ({running}): left by a hub that stopped without "
                          f"stopping them, or another course uses these logins. `make course-down` stops them "
                          f"(python -m autograder course down [--state DIR]).")
    data = data if data is not None else os.environ.get("LABTOOLS_DATA") or None
    if data and not Path(data).is_dir():
        raise CourseError(f"LABTOOLS_DATA={data!r} is not a folder (the users' data root)")
    python_bin = venv_bin()

    if state.root.is_relative_to(HUB_DIR) and not (HUB_DIR / ".gitignore").exists():
        HUB_DIR.mkdir(parents=True, exist_ok=True)
        (HUB_DIR / ".gitignore").write_text("*\n")  # the state stays out of git (make course-proxy writes it too)
    for folder, mode in ((state.root, 0o755), (state.hub_dir, 0o700), (state.exchange, 0o1777)):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, mode)
    previous = _read_course(state) or {}
    for private in (state.course_json, state.hub_log):
        private.touch()  # before the boundary closes them to the students (their ACL stays when rewritten)
    accounts.ensure_group(GROUP)
    accounts.ensure_group(STUDENTS_GROUP)
    for user in users:
        accounts.ensure_user(user, student=user != instructor)
    reach = [Path(sys.executable).resolve(), Path(sys.base_prefix) / "lib", python_bin, REPO, state.exchange]
    reach += [Path(data)] if data else []
    granted = accounts.grant_traverse([p for p in reach if p.exists()])
    # the students may read what the student bundle ships and what they run, nothing else of the repository
    closed = boundary.close(boundary.plan(Path(sys.prefix), state, data))
    acl = {"acl_granted": sorted(set(previous.get("acl_granted", [])) | set(map(str, granted))),
           "acl_students": sorted(set(previous.get("acl_students", [])) | set(closed))}
    # what `down --purge` takes back, recorded now: the rest of `up` may fail
    state.course_json.write_text(json.dumps({"instructor": instructor, "students": names, **acl}, indent=1) + "\n")
    user_env = {"PATH": f"{python_bin}:/usr/local/bin:/usr/bin:/bin", "LANG": os.environ.get("LANG", "C.UTF-8")}
    accounts.probe_python(names[0], python_bin / "python", user_env)
    passwords = accounts.ensure_passwords(state.logins, users)

    root = course_root(instructor)
    write_user_config(instructor, home_of(instructor), state.exchange, instructor=True, course_root=root)
    for name in names:
        write_user_config(name, home_of(name), state.exchange, instructor=False)
    labs = course_labs()
    prepare_course_dir(root, labs, instructor)
    nbgrader = setup_course(root, names, labs, python_bin / "python", user_env, instructor)

    hub_port = processes.free_port({port})
    proxy_api_port = processes.free_port({port, hub_port})
    url = f"http://127.0.0.1:{port}/"
    info = {"url": url, "port": port, "hub_port": hub_port, "proxy_api_port": proxy_api_port,
            "instructor": instructor, "students": names, "course_id": COURSE_ID, "exchange": str(state.exchange),
            "course_root": str(root), "python_bin": str(python_bin), "proxy": str(PROXY), "data": data,
            "labs": labs, "max_score": nbgrader["max_score"],
            **acl}
    state.course_json.write_text(json.dumps(info, indent=1) + "\n")

    env = {**os.environ, STATE_ENV: str(state.root),
           "PATH": os.pathsep.join([str(python_bin), os.environ.get("PATH", "/usr/bin:/bin")])}
    env.pop("JUPYTER_CONFIG_DIR", None)
    hub = processes.start_hub(python_bin / "jupyterhub", HUB_CONFIG, state.hub_dir, state.hub_log, env)
    state.hub_pid.write_text(f"{hub.pid}\n")
    try:
        processes.wait_for_hub(hub, url, state.hub_log)
    except CourseError:
        down(state.root)
        raise
    return Course(url=url, port=port, instructor=instructor, students=names, passwords=passwords,
                  state=str(state.root), exchange=str(state.exchange), course_root=str(root), course_id=COURSE_ID,
                  hub_pid=hub.pid, log=str(state.hub_log), max_score=nbgrader["max_score"],
                  seconds=time.monotonic() - started)


def _describe(pid: int, names: dict[int, str]) -> str:
    try:
        owner = names.get(os.stat(f"/proc/{pid}").st_uid, "root")
    except OSError:
        owner = "?"
    command = processes.cmdline(pid)
    kind = ("proxy" if "configurable-http-proxy" in command else "single-user server" if "singleuser" in command
            else "kernel" if "kernel" in command else command.split(" ")[0].rsplit("/", 1)[-1])
    return f"{kind} of {owner} (pid {pid})" if owner != "root" else f"{kind} (pid {pid})"


def down(state_dir: Path | str | None = None, purge: bool = False) -> list[str]:
    """Stop the course of ``state_dir``: the hub, its proxy, every single-user server and kernel.

    Returns what it stopped (``["hub (pid 12)", "proxy (pid 13)", ...]``; empty when nothing ran).
    ``purge``: also delete the course's system users with their homes, the ACL entries ``up``
    added and the state folder. Raises :class:`CourseError` when something still runs afterwards.
    """
    state = StateDir(Path(state_dir).resolve() if state_dir else default_state())
    info = _read_course(state) or {}
    users = [u for u in [info.get("instructor", INSTRUCTOR), *info.get("students", [])] if accounts.uid_of(u) is not None]
    uid_names = {accounts.uid_of(u): u for u in users}
    stopped: list[str] = []
    hub = _hub_pid(state)
    if hub is not None:
        if os.geteuid() != 0:
            accounts.require_root("down")
        below = processes.descendants(hub)
        described = {pid: _describe(pid, uid_names) for pid in below}
        stopped.append(f"hub (pid {hub})")
        processes.terminate([hub], grace=30)  # the hub stops its servers, then the proxy
        stopped += [described[pid] for pid in below]
    proxy = processes.read_pid(state.proxy_pid)
    leftovers = [proxy] if proxy and processes.alive(proxy) and "configurable-http-proxy" in processes.cmdline(proxy) else []
    leftovers += _course_user_processes(users)
    if leftovers:
        accounts.require_root("down")
        stopped += [_describe(pid, uid_names) for pid in leftovers if f"(pid {pid})" not in " ".join(stopped)]
        processes.terminate(leftovers, grace=5)
    state.hub_pid.unlink(missing_ok=True)
    still = [pid for pid in ([hub] if hub else []) + leftovers if processes.alive(pid)] + _course_user_processes(users)
    if still:
        raise CourseError(f"still running after down: {', '.join(_describe(p, uid_names) for p in still)}")
    if purge:
        accounts.require_root("purge")
        for user in users:
            accounts.remove_user(user)
        if not any(accounts.is_course_user(u.pw_name) for u in pwd.getpwall()):
            # the entries are the groups': another course's users (same groups) may still need them, or
            # still be kept out by them
            accounts.revoke_traverse(info.get("acl_granted", []))
            boundary.reopen(info.get("acl_students", []))
            accounts.remove_group(STUDENTS_GROUP)
            accounts.remove_group(GROUP)
        if state.root.is_dir():
            shutil.rmtree(state.root)
    return stopped


def as_dict(course: Course) -> dict:
    """``course`` as plain data (for JSON)."""
    return asdict(course)
