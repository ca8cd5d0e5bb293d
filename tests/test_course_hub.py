"""The course on one machine (``python -m autograder course up|down``), for real: JupyterHub, its proxy,
system users, nbgrader's exchange and formgrader.

As root, with the proxy installed (``make course-proxy``), one course is brought up for the module
with two students on a free port and logins of its own (``mltest-teacher``, ``mltest-s01``,
``mltest-s02``: a course someone runs on the machine is never touched), in a state folder of its
own in ``/tmp``. A student logs in through the hub's login form, starts a server, fetches and
submits a lab through the Assignment List's server API and cannot reach formgrader; the instructor's
formgrader API lists the five labs with their points and, after collecting, the submission;
``down`` leaves no process of the hub, the proxy or the servers. The users, their homes and the
state folder are removed at the end. About 50 s on a 2-core machine (most of it the servers' start).

The release boundary is tried as an attacker would: a script run as the student's Unix user reads
the reference solution, the hidden checks, ``autograder/``, ``.git``, ``tests/``, the graded
deliverable, the instructor's course, another student's home and the hub's log (all refused), while
the kit's Python, ``labtools`` and the shipped checkpoints work; a sweep of the repository as the
student finds nothing readable outside what the student bundle ships; Validate runs a notebook in
the student's server. ``down --purge`` takes every ACL entry back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.hub import CourseError, down, status, up
from autograder.hub import processes
from autograder.hub.accounts import runuser, uid_of
from autograder.hub.layout import STUDENTS_GROUP, course_labs
from autograder.paths import REPO
from hub_course import login, page_config, running_course, skip_reason, start_server, wait_ready, xsrf

INSTRUCTOR, PREFIX = "mltest-teacher", "mltest-s"
STUDENT, OTHER = "mltest-s01", "mltest-s02"

needs_hub = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

requests = pytest.importorskip("requests")


@pytest.fixture(scope="module")
def course():
    with running_course(students=2, instructor=INSTRUCTOR, student_prefix=PREFIX) as started:
        yield started


@pytest.fixture(scope="module")
def sessions(course):
    """The student's and the instructor's sessions, both servers started (in parallel) and ready."""
    student, instructor = login(course, STUDENT), login(course, INSTRUCTOR)
    assert (student.login_status, instructor.login_status) == (302, 302)
    start_server(course, student, STUDENT)
    start_server(course, instructor, INSTRUCTOR)
    for session, user in ((student, STUDENT), (instructor, INSTRUCTOR)):
        wait_ready(course, session, user)
        lab = session.get(f"{course.url}user/{user}/lab", timeout=60)  # the OAuth round trip sets the server's cookie
        assert lab.status_code == 200 and lab.url.endswith(f"/user/{user}/lab"), lab.url
        session.lab_page = lab.text
    return {STUDENT: student, INSTRUCTOR: instructor}


@needs_hub
def test_up_releases_the_labs_and_is_idempotent(course):
    labs = course_labs()
    assert len(labs) == 5 and sorted(course.max_score) == labs
    assert all(points > 0 for points in course.max_score.values()), course.max_score
    outbound = Path(course.exchange) / course.course_id / "outbound"
    assert sorted(p.name for p in outbound.iterdir()) == labs
    assert os.stat(course.exchange).st_mode & 0o7777 == 0o1777  # nbgrader's exchange: world-writable, sticky
    again = up(students=2, port=course.port, state_dir=course.state, instructor=INSTRUCTOR, student_prefix=PREFIX)
    assert again.already_running and again.hub_pid == course.hub_pid
    assert status(course.state).url == course.url


@needs_hub
def test_wrong_password_is_refused(course):
    assert login(course, STUDENT, password=course.passwords[OTHER]).login_status != 302
    assert login(course, INSTRUCTOR, password=course.passwords[STUDENT]).login_status != 302


@needs_hub
def test_student_server_runs_the_kit_as_the_student(course, sessions):
    (pid,) = [p for p in processes.processes_of({uid_of(STUDENT)}) if "jupyterhub-singleuser" in processes.cmdline(p)]
    environ = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    assert processes.cmdline(pid).split()[1] == str(Path(sys.prefix) / "bin" / "jupyterhub-singleuser")
    if os.environ.get("LABTOOLS_DATA"):
        assert environ["LABTOOLS_DATA"] == os.environ["LABTOOLS_DATA"]
    check = ("import labtools, labtools.paths as p; r = p.resolve_data_root(); "
             "print(labtools.__file__, sorted(q.name for q in r.iterdir()) if r.is_dir() else 'no data root')")
    result = subprocess.run([runuser(), "-u", STUDENT, "--", sys.executable, "-c", check], capture_output=True,
                            text=True, cwd="/", env={**environ, "PATH": environ["PATH"]})
    assert result.returncode == 0, result.stderr
    if os.environ.get("LABTOOLS_DATA"):
        assert "MNIST" in result.stdout, result.stdout


@needs_hub
def test_student_sees_the_student_side_only(course, sessions):
    student = sessions[STUDENT]
    disabled = page_config(student.lab_page).get("disabledExtensions", [])
    assert {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
            "@jupyter/nbgrader:course-list"} <= set(disabled)
    assert not {"@jupyter/nbgrader:assignment-list", "@jupyter/nbgrader:validate-assignment"} & set(disabled)
    assert student.get(f"{course.url}user/{STUDENT}/formgrader/api/assignments", timeout=30).status_code in (403, 404)
    assert student.get(f"{course.url}user/{STUDENT}/formgrader", timeout=30).status_code in (403, 404)
    instructor_page = page_config(sessions[INSTRUCTOR].lab_page).get("disabledExtensions", [])
    assert "@jupyter/nbgrader:formgrader" not in instructor_page


@needs_hub
def test_student_fetches_and_submits_through_the_exchange(course, sessions):
    student, base = sessions[STUDENT], f"{course.url}user/{STUDENT}/assignments"
    listed = student.get(base, params={"course_id": course.course_id}, timeout=60).json()
    assert listed["success"] and {a["assignment_id"] for a in listed["value"]} == set(course_labs())
    form = {"course_id": course.course_id, "assignment_id": "lab1_retrieval"}
    fetched = student.post(base + "/fetch", data=form, headers=xsrf(student, STUDENT), timeout=60).json()
    assert fetched["success"], fetched
    notebook = Path("/home") / STUDENT / "lab1_retrieval" / "lab1_retrieval.ipynb"
    assert notebook.is_file() and notebook.stat().st_uid == uid_of(STUDENT)
    submitted = student.post(base + "/submit", data=form, headers=xsrf(student, STUDENT), timeout=60).json()
    assert submitted["success"], submitted
    inbound = Path(course.exchange) / course.course_id / "inbound"
    (entry,) = [p for p in inbound.iterdir() if p.name.startswith(f"{STUDENT}+lab1_retrieval+")]
    assert entry.stat().st_uid == uid_of(STUDENT)


@needs_hub
def test_formgrader_lists_the_labs_and_the_submission(course, sessions):
    instructor, base = sessions[INSTRUCTOR], f"{course.url}user/{INSTRUCTOR}/formgrader"
    assignments = instructor.get(base + "/api/assignments", timeout=60).json()
    assert sorted(a["name"] for a in assignments) == course_labs()
    assert all(a["max_score"] > 0 and a["status"] == "released" for a in assignments), assignments
    students = {s["id"] for s in instructor.get(base + "/api/students", timeout=60).json()}
    assert students == {STUDENT, OTHER}
    collected = instructor.post(base + "/api/assignment/lab1_retrieval/collect", headers=xsrf(instructor, INSTRUCTOR),
                                timeout=120).json()
    assert collected["success"], collected
    submissions = instructor.get(base + "/api/submissions/lab1_retrieval", timeout=60).json()
    assert [s["student"] for s in submissions if s["submitted"]] == [STUDENT]


#: Run as the student (``runuser``): each attempt on the instructor's side, then what the student side
#: needs, then a sweep of every file of the repository the student can read (the venv left out).
ATTACK = r"""
import json, os, sys

repo, instructor_course, other_home, state, deliverable = sys.argv[1:]
lab = f"{repo}/autograder/labs/lab1_retrieval"


def attempt(action):
    try:
        action()
    except Exception as error:
        return type(error).__name__
    return "read"


def read(path):
    return lambda: open(path, "rb").read(1)


def listing(path):
    return lambda: os.listdir(path)


def grader():
    import autograder  # noqa: F401


refused = {
    "reference solution": attempt(read(f"{lab}/reference.py")),
    "hidden checks": attempt(read(f"{lab}/hidden.py")),
    "reference outputs": attempt(read(f"{lab}/reference_outputs.pt")),
    "list autograder/": attempt(listing(f"{repo}/autograder")),
    "source notebooks": attempt(listing(f"{repo}/autograder/course/source")),
    "import autograder": attempt(grader),
    ".git/HEAD": attempt(read(f"{repo}/.git/HEAD")),
    "mistakes table": attempt(read(f"{repo}/tests/labs/mistakes/lab1_retrieval.py")),
    "graded deliverable": attempt(read(f"{repo}/{deliverable}")),
    "instructor's course": attempt(listing(f"{instructor_course}/source")),
    "other student's home": attempt(listing(other_home)),
    "hub log": attempt(read(f"{state}/hub.log")),
    "course.json": attempt(read(f"{state}/course.json")),
}


def student_side():
    import importlib.util
    import labtools, torch  # noqa: F401
    from labtools.checks import run_public_checks  # noqa: F401

    importlib.util.find_spec("autograder")  # how labtools.sandbox finds the grader's package to hide it
    open(f"{repo}/models/mnist_classifier.pt", "rb").read(1)


readable = []
for folder, dirs, files in os.walk(repo):  # folders the student cannot list are skipped
    dirs[:] = [d for d in dirs if os.path.join(folder, d) != os.path.join(repo, ".venv")]
    readable += [os.path.relpath(os.path.join(folder, f), repo) for f in files
                 if os.access(os.path.join(folder, f), os.R_OK)]
print(json.dumps({"refused": refused, "works": attempt(student_side), "readable": readable}))
"""


def run_as(user: str, argv: list[str]) -> subprocess.CompletedProcess:
    env = {"PATH": f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin", "HOME": f"/home/{user}", "LANG": "C.UTF-8"}
    if os.environ.get("LABTOOLS_DATA"):
        env["LABTOOLS_DATA"] = os.environ["LABTOOLS_DATA"]
    return subprocess.run([runuser(), "-u", user, "--", *argv], capture_output=True, text=True, cwd="/", env=env,
                          timeout=120)


@needs_hub
def test_student_cannot_read_the_instructor_side(course):
    from autograder.release import GRADED_DELIVERABLES, INCLUDE, deliverable_excluded

    deliverable = GRADED_DELIVERABLES[0]
    assert (REPO / deliverable).is_file() and (REPO / "autograder/labs/lab1_retrieval/reference.py").is_file()
    result = run_as(STUDENT, [sys.executable, "-c", ATTACK, str(REPO), f"{course.course_root}",
                              f"/home/{OTHER}", course.state, deliverable])
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(found["refused"].values()) == {"PermissionError"}, found["refused"]
    assert found["works"] == "read", found["works"]
    # everything the student can read of the repository is what the student bundle ships
    readable = found["readable"]
    assert {"models/mnist_classifier.pt", "labtools/__init__.py", "notebooks/lab1_retrieval.ipynb"} <= set(readable)
    outside = [p for p in readable if p.split("/")[0] not in INCLUDE or deliverable_excluded(p)]
    assert outside == [], outside[:20]
    # the instructor keeps everything
    mine = subprocess.run([runuser(), "-u", INSTRUCTOR, "--", "cat", str(REPO / deliverable),
                           str(REPO / "autograder/labs/lab1_retrieval/reference.py")], capture_output=True)
    assert mine.returncode == 0, mine.stderr


@needs_hub
def test_student_validates_a_notebook(course, sessions):
    student = sessions[STUDENT]
    grade = {"grade": True, "locked": True, "points": 1, "schema_version": 3, "solution": False, "task": False}
    works = ("import importlib.util, labtools.paths\n"
             "importlib.util.find_spec('autograder')\n"
             "assert (labtools.paths.models_dir() / 'mnist_classifier.pt').read_bytes()")
    cells = [{"cell_type": "code", "execution_count": None, "outputs": [], "source": source,
              "metadata": {"nbgrader": {**grade, "grade_id": name}}}
             for name, source in (("works", works), ("ran", "import getpass\nassert False, getpass.getuser()"))]
    notebook = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}
    base = f"{course.url}user/{STUDENT}"
    put = student.put(f"{base}/api/contents/validate_me.ipynb", headers=xsrf(student, STUDENT), timeout=60,
                      json={"type": "notebook", "format": "json", "content": notebook})
    assert put.status_code in (200, 201), put.text
    answer = student.post(f"{base}/assignments/validate", data={"path": "validate_me.ipynb"},
                          headers=xsrf(student, STUDENT), timeout=120).json()
    assert answer["success"], answer
    # the kernel ran the notebook as the student: the first cell passed, the second failed as it should
    (failed,) = answer["value"]["failed"]
    assert "getpass" in failed["source"] and STUDENT in failed["raw_error"], answer["value"]


@needs_hub
def test_down_leaves_nothing_running(course, sessions):
    users = [INSTRUCTOR, STUDENT, OTHER]
    servers = processes.processes_of({uid_of(u) for u in users})
    assert len(servers) >= 2  # the two single-user servers (and whatever they started)
    proxy = processes.read_pid(Path(course.state) / "hub" / "jupyterhub-proxy.pid")
    assert proxy and processes.alive(proxy)
    stopped = down(course.state)
    assert stopped[0] == f"hub (pid {course.hub_pid})" and any(s.startswith("proxy") for s in stopped), stopped
    assert not processes.alive(course.hub_pid) and not processes.alive(proxy)
    assert not any(processes.alive(pid) for pid in servers)
    assert processes.processes_of({uid_of(u) for u in users}) == []
    ours, uids = {course.hub_pid, proxy, *servers}, {uid_of(u) for u in users}
    ps = subprocess.run(["ps", "-eo", "pid=,stat=,uid=,args="], capture_output=True, text=True).stdout
    running = [line for line in ps.splitlines() if (int(line.split()[0]) in ours or int(line.split()[2]) in uids)
               and not line.split()[1].startswith("Z")]
    assert running == [], running
    assert not processes.port_in_use(course.port)
    assert status(course.state) is None and down(course.state) == []


@needs_hub
def test_purge_takes_the_acl_entries_back(course, sessions):
    import grp
    import pwd

    from autograder.hub.accounts import is_course_user

    recorded = json.loads((Path(course.state) / "course.json").read_text())["acl_students"]
    assert str(REPO / "autograder") in recorded and str(REPO / ".git") in recorded
    down(course.state, purge=True)
    if any(is_course_user(u.pw_name) for u in pwd.getpwall()):
        pytest.skip("another course's users remain on this machine: the groups' ACL entries stay for them")
    with pytest.raises(KeyError):
        grp.getgrnam(STUDENTS_GROUP)
    kept = [path for path in recorded if os.path.exists(path) and "system.posix_acl_access" in os.listxattr(path)]
    assert kept == [], kept


def test_up_says_it_needs_root(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(CourseError, match="bringing the course up needs root: .* Run it as root, e.g. `sudo make course`"):
        up(students=2, state_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cli_errors_are_in_the_users_terms(tmp_path):
    cli = [sys.executable, "-m", "autograder", "course"]
    bad = subprocess.run(cli + ["up", "--students", "two"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid int value" in bad.stderr
    unknown = subprocess.run(cli + ["up", "--colour"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "unrecognized arguments: --colour" in unknown.stderr
    nothing = subprocess.run(cli + ["down", "--state", str(tmp_path)], capture_output=True, text=True)
    assert nothing.returncode == 0 and "No course is running" in nothing.stdout
    if os.geteuid() != 0:
        return
    with socket_listening() as port:
        busy = subprocess.run(cli + ["up", "--port", str(port), "--state", str(tmp_path)], capture_output=True, text=True)
    assert busy.returncode == 1 and f"port {port} is in use" in busy.stderr


class socket_listening:
    """A loopback port something listens on, for the length of a ``with``."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()
