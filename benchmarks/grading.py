"""Seconds per Lab 1 submission: stock ``nbgrader autograde`` (sequential) vs ``python -m autograder grade``.

    python benchmarks/grading.py [-n N] [--jobs J] [--smoke] [--keep DIR]

Builds N sample submissions of Lab 1 (the reference's functions in the course's source
notebook, every other one with the "AP off by one" mistake), then times

* plain ``nbgrader autograde lab1_retrieval`` with the course's stock configuration, in a private
  course copy, one submission after the other (nbgrader's own way), and
* this grader (trusted sandboxed checks + ``nbgrader autograde`` with RobustExecute/TrustedGrades +
  ``generate_feedback`` + gradebook merge), with ``--jobs`` parallel submissions (all cores by default),

and prints seconds per submission side by side with the ratio. ``--smoke`` grades 2 submissions.
Needs MNIST under ``LABTOOLS_DATA``. Nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autograder.nbgrader_cli import tool_env  # noqa: E402
from autograder.paths import COURSE_DIR, REPO  # noqa: E402
from benchmarks.cli import positive_int, work_folder  # noqa: E402

LAB = "lab1_retrieval"
sys.path.insert(0, str(REPO / "tests" / "submissions"))


def make_submissions(root: Path, n: int) -> Path:
    import build

    mistake = build.mistake_code(LAB, "ap_off_by_one")
    for i in range(n):
        build.write_submission(root / f"student{i:03d}", LAB, replace=mistake if i % 2 else None, course=COURSE_DIR)
    return root


def stock_nbgrader(submissions: Path, work: Path, env: dict) -> float:
    """Seconds of a plain sequential ``nbgrader autograde`` of every submission (stock config)."""
    course = work / "stock_course"
    course.mkdir(parents=True)
    shutil.copy(COURSE_DIR / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copytree(COURSE_DIR / "source" / LAB, course / "source" / LAB)
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", LAB, "--force"], cwd=course, env=env,
                   check=True, capture_output=True)
    for student in sorted(p.name for p in submissions.iterdir()):
        shutil.copytree(submissions / student, course / "submitted" / student / LAB)
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", LAB], cwd=course, env=env,
                         capture_output=True, text=True)
    seconds = time.monotonic() - started
    if run.returncode != 0:
        print(run.stderr[-3000:], file=sys.stderr)
    return seconds


def this_grader(submissions: Path, work: Path, env: dict, jobs: int) -> float:
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", LAB, str(submissions), "--out",
                          str(work / "graded"), "--jobs", str(jobs)], cwd=work, env=env, capture_output=True,
                         text=True)
    seconds = time.monotonic() - started
    if run.returncode != 0:
        print(run.stdout[-2000:], run.stderr[-3000:], file=sys.stderr)
        raise SystemExit("the grader failed")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=positive_int, default=8, help="number of submissions (default 8)")
    parser.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1, help="parallel submissions of this grader")
    parser.add_argument("--smoke", action="store_true", help="a tiny run: 2 submissions")
    parser.add_argument("--keep", default=None, help="keep the work folder here instead of a temporary one")
    args = parser.parse_args(argv)
    n = 2 if args.smoke else args.n
    env = tool_env(PYTHONPATH=str(REPO), LABTOOLS_FAST="1")
    with work_folder(args.keep, "grading-bench-") as work:
        submissions = make_submissions(work / "submissions", n)
        stock = stock_nbgrader(submissions, work, env)
        ours = this_grader(submissions, work, env, args.jobs)
    cpu = f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}"
    print(f"Lab 1, {n} submissions ({cpu})")
    print(f"{'':38}{'total s':>9}{'s/submission':>14}")
    print(f"{'nbgrader autograde (stock, sequential)':38}{stock:9.1f}{stock / n:14.1f}")
    print(f"{f'python -m autograder grade --jobs {args.jobs}':38}{ours:9.1f}{ours / n:14.1f}")
    print(f"ratio (this grader / stock): {ours / stock:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
