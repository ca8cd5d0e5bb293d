"""A class on loopback: N students through the course's hub and exchange, then collected and graded.

As root (the course creates system users), with the hub's proxy installed (``make course-proxy``)::

    python benchmarks/course.py                # 30 students
    python benchmarks/course.py --students 4   # a quick run

It brings up a course of its own (``autograder.hub.up``: its own logins ``mlbench-*``, a state
folder in /tmp, a free port), then every student at once, each in a thread of its own, does what
the browser does (:mod:`autograder.hub.client`): log in, start the server, open JupyterLab, fetch
Lab 1 through the exchange, save a filled notebook (the reference's functions, as
``benchmarks/grading.py`` builds them) and submit it. The instructor then collects them all with
formgrader's Collect, and ``python -m autograder grade`` grades the collected folder (the kit's
pipeline: sandbox, trusted checks, feedback). ``down --purge`` removes the course at the end.

It prints the seconds of each step (for the students' steps: median and slowest of the N, and the
wall time of all N together) and the peak memory: the resident memory of every process of the
course (the hub, the proxy, the N + 1 servers and their kernels, sampled every 0.2 s), and the
machine's used memory above what it used before the course came up. The figures are in
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "submissions"))

from autograder.hub import client, down, processes, up  # noqa: E402
from autograder.hub.accounts import uid_of  # noqa: E402

LAB = "lab1_retrieval"
INSTRUCTOR, PREFIX = "mlbench-teacher", "mlbench-s"
STEPS = ("login", "start server", "open JupyterLab", "fetch", "save notebook", "submit")


def used_memory() -> int:
    """Bytes of the machine's memory in use (MemTotal - MemAvailable)."""
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) * 1024


def rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/status").read_text().split("VmRSS:")
        except OSError:
            continue
        if len(fields) == 2:
            total += int(fields[1].split()[0]) * 1024
    return total


class MemoryWatch(threading.Thread):
    """Samples, until stopped, the resident memory of the course's processes and the machine's used memory."""

    def __init__(self, course, users: list[str]):
        super().__init__(daemon=True)
        self.course, self.uids = course, {uid_of(user) for user in users}
        self.peak_rss, self.peak_used, self.stopped = 0, 0, threading.Event()

    def run(self):
        while not self.stopped.is_set():
            pids = processes.processes_of(self.uids)
            hub = self.course.hub_pid
            pids += [hub, *processes.descendants(hub)] if hub else []
            self.peak_rss = max(self.peak_rss, rss(sorted(set(pids))))
            self.peak_used = max(self.peak_used, used_memory())
            time.sleep(0.2)


def filled_notebook(root: Path) -> dict:
    """Lab 1's released notebook with the reference's functions in its solution cells (nbformat JSON)."""
    import build

    build.write_submission(root, LAB)
    return json.loads((root / f"{LAB}.ipynb").read_text())


def student_run(course, user: str, notebook: dict) -> dict[str, float]:
    """One student's steps, timed: ``{step: seconds}``."""
    seconds, started = {}, time.monotonic()

    def step(name, action):
        nonlocal started
        result = action()
        now = time.monotonic()
        seconds[name], started = now - started, now
        return result

    session = step("login", lambda: client.login(course.url, user, course.passwords[user]))
    if session.status != 302:
        raise RuntimeError(f"{user} could not log in (HTTP {session.status})")
    step("start server", lambda: (client.start_server(session), client.wait_ready(session, timeout=600)))
    step("open JupyterLab", lambda: client.open_lab(session))
    step("fetch", lambda: client.fetch(session, course.course_id, LAB))
    step("save notebook", lambda: client.put_notebook(session, f"{LAB}/{LAB}.ipynb", notebook))
    step("submit", lambda: client.submit(session, course.course_id, LAB))
    return seconds


def summary(name: str, values: list[float]) -> str:
    return f"{name:<26}{statistics.median(values):>9.2f}{max(values):>9.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="grade's parallel submissions")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("the course creates system users: run it as root")
    state = Path(tempfile.mkdtemp(prefix="metric-lab-course-bench-"))
    os.chmod(state, 0o755)
    idle = used_memory()
    wall = {}
    try:
        begun = time.monotonic()
        course = up(students=args.students, port=processes.free_port(), state_dir=state, instructor=INSTRUCTOR,
                    student_prefix=PREFIX)
        wall["course up"] = time.monotonic() - begun
        students = list(course.students)
        watch = MemoryWatch(course, students + [INSTRUCTOR])
        watch.start()
        notebook = filled_notebook(state / "filled")
        begun = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(students)) as pool:
            runs = list(pool.map(lambda user: student_run(course, user, notebook), students))
        wall["all students, together"] = time.monotonic() - begun

        begun = time.monotonic()
        instructor = client.login(course.url, INSTRUCTOR, course.passwords[INSTRUCTOR])
        client.start_server(instructor)
        client.wait_ready(instructor, timeout=600)
        client.open_lab(instructor)
        wall["instructor's server"] = time.monotonic() - begun
        begun = time.monotonic()
        client.collect(instructor, LAB)
        wall["collect (formgrader)"] = time.monotonic() - begun
        watch.stopped.set()
        watch.join()

        submitted = Path(course.course_root) / "submitted"
        grades = state / "grades"
        begun = time.monotonic()
        subprocess.run([sys.executable, "-m", "autograder", "grade", LAB, str(submitted), "--out", str(grades),
                        "--jobs", str(args.jobs), "--no-similarity"], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        wall["grade (all submissions)"] = time.monotonic() - begun
        with open(grades / "grades.csv") as handle:
            totals = [line.split(",")[3] for line in handle if ",TOTAL," in line]
    finally:
        down(state, purge=True)
        shutil.rmtree(state, ignore_errors=True)

    print(f"{args.students} students, {os.cpu_count()} cores")
    print(f"{'student step':<26}{'median s':>9}{'max s':>9}")
    for name in STEPS:
        print(summary(name, [run[name] for run in runs]))
    print(summary("all steps of one student", [sum(run.values()) for run in runs]))
    print(f"\n{'wall time':<26}{'s':>9}")
    for name, seconds in wall.items():
        print(f"{name:<26}{seconds:>9.1f}")
    print(f"{'grade, per submission':<26}{wall['grade (all submissions)'] / len(totals):>9.1f}")
    print(f"\ngraded {len(totals)} submissions; totals {sorted(set(totals))}")
    print(f"peak memory: course processes {watch.peak_rss / 2**30:.2f} GiB resident; machine "
          f"{(watch.peak_used - idle) / 2**30:.2f} GiB above idle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
