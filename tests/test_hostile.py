"""A class with hostile students, graded end to end by ``python -m autograder grade`` in the sandbox.

Each attack of ``tests/submissions/hostile/`` is tried by one student, as a notebook cell that the
autograde kernel runs (``cell_*.py``) or inside a graded function that the check worker runs
(the function snippets). Two honest students and one with a typical mistake are graded beside
them. Every student must get exactly the points of its functions; the honest students' rows and
gradebook entries are those of a class without attackers; the repository (course folder
included), the other students' submissions and a canary folder are unchanged, byte for byte; no
secret of the grader's environment, no reference solution and no gradebook reaches a feedback
page; the grader receives no signal and no connection. Skipped without MNIST or bubblewrap.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

sys.path.insert(0, str(Path(__file__).parent / "submissions"))
import build  # noqa: E402
from gradebook_rows import lost, mnist_available, read_grades  # noqa: E402

from autograder.paths import REPO
from labtools import sandbox  # noqa: E402

HOSTILE = Path(__file__).parent / "submissions" / "hostile"
LAB = "lab1_retrieval"
SECRET = "metric-lab-grader-secret-5f0c"
#: Text of files no student may see: the reference solution, the hidden checks, a gradebook.
FORBIDDEN_TEXT = ("Lab 1 reference: squared Euclidean", "Hidden checks: the student's functions", "SQLite format 3")
DIST = {f"distances.{c}" for c in ("shape_dtype", "identical_opposite", "symmetric", "vectorized", "hidden_fixed",
                                    "hidden_random")}
MAP = {"evaluate_mAP.shapes", "evaluate_mAP.hidden_fixed", "evaluate_mAP.hidden_classifier"}


pytestmark = [
    pytest.mark.skipif(not mnist_available(), reason="no MNIST under LABTOOLS_DATA"),
    pytest.mark.skipif(sandbox.unavailable_reason() is not None, reason=f"no sandbox: {sandbox.unavailable_reason()}"),
]


def digest_tree(root: Path, skip=(".git", ".venv", "__pycache__", "out", ".pytest_cache", ".hub")) -> dict[str, str]:
    """SHA-256 of every file under ``root`` by relative path (links by their target)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip and not d.endswith(".egg-info")]
        for name in files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            found[key] = ("link:" + os.readlink(path) if path.is_symlink()
                          else hashlib.sha256(path.read_bytes()).hexdigest())
    return found


class Listener:
    """A loopback TCP server of the test process that records whatever reaches it."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.5)
        self.port = self.server.getsockname()[1]
        self.received: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(1)
                try:
                    self.received.append(connection.recv(100) or b"<connected>")
                except OSError:
                    self.received.append(b"<connected>")

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.server.close()


def hostile_cell(name: str, values: dict[str, str]) -> str:
    text = (HOSTILE / f"{name}.py").read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def notebook_with_cell(code: str):
    nb = build.student_notebook(LAB)
    where = next(i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                 == "test_distances")
    nb.cells.insert(where, new_code_cell(code))
    return nb


def hostile_class(root: Path, values: dict[str, str]) -> dict[str, tuple[set, set]]:
    """Write the class; return ``{student: (checks it must lose, checks it may also lose)}``."""
    cases = {}

    def add(student, nb, exact=frozenset(), maybe=frozenset()):
        (root / student).mkdir(parents=True)
        nbformat.write(nb, root / student / f"{LAB}.ipynb")
        cases[student] = (set(exact), set(maybe))

    add("honest_a", build.student_notebook(LAB))
    add("honest_b", build.student_notebook(LAB))
    add("ap_off_by_one", build.student_notebook(LAB, build.mistake_code(LAB, "ap_off_by_one")),
        build.mistakes(LAB)["ap_off_by_one"].lost)
    for cell in ("cell_reads", "cell_writes", "cell_escape"):
        add(cell, notebook_with_cell(hostile_cell(cell, values)))
    # links beside the reader's notebook, to a course file and to the grader's package
    os.symlink(REPO / "autograder" / "reference" / "lab1.py", root / "cell_reads" / "notes.txt")
    os.symlink(REPO / "autograder", root / "cell_reads" / "course")
    for function in ("from_file", "np_pickle", "torch_pickle", "disk_bomb"):
        add(function, build.student_notebook(LAB, build.snippet_functions(HOSTILE / f"{function}.py")), DIST, MAP)
    return cases


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    submissions, out, canary = root / "submissions", root / "out", root / "canary"
    canary.mkdir()
    (canary / "keep.txt").write_text("untouched")
    listener = Listener()
    signals: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda number, frame: signals.append(number))
    values = {"REPO": str(REPO), "OUT": str(out), "SUBMISSIONS": str(submissions), "CANARY": str(canary),
              "PORT": str(listener.port), "PID": str(os.getpid())}
    try:
        cases = hostile_class(submissions, values)
        before = digest_tree(REPO), digest_tree(submissions), digest_tree(canary)
        env = {**os.environ, "PYTHONPATH": str(REPO), "METRIC_LAB_SECRET": SECRET}
        run = subprocess.run([sys.executable, "-m", "autograder", "grade", LAB, str(submissions), "--out", str(out),
                              "--jobs", "2", "--time-limit", "150", "--keep-work"], cwd=root, env=env,
                             capture_output=True, text=True, timeout=1500)
        after = digest_tree(REPO), digest_tree(submissions), digest_tree(canary)
    finally:
        listener.close()
        signal.signal(signal.SIGUSR1, previous)
    return {"run": run, "out": out, "root": root, "cases": cases, "before": before, "after": after,
            "listener": listener, "signals": signals}


def feedback_text(out: Path, student: str) -> str:
    return "".join(p.read_text(errors="replace") for p in (out / "feedback" / student).glob("*.html"))


def printed(out: Path, student: str) -> str:
    """What the student's cells printed, as its feedback page shows it (the cells' code left out)."""
    page = feedback_text(out, student)
    blocks = re.findall(r'class="output_subarea output_stream[^"]*"[^>]*>\s*<pre>(.*?)</pre>', page, re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", "\n".join(blocks)))


def test_the_class_is_graded(graded):
    run = graded["run"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    assert set(read_grades(graded["out"])) == set(graded["cases"])
    assert "not sandboxed" not in run.stdout


@pytest.mark.parametrize("student", ["honest_a", "honest_b", "ap_off_by_one", "cell_reads", "cell_writes",
                                     "cell_escape", "from_file", "np_pickle", "torch_pickle", "disk_bomb"])
def test_each_student_gets_the_points_of_its_functions(graded, student):
    exact, maybe = graded["cases"][student]
    checks = read_grades(graded["out"])[student]
    got = lost(checks)
    assert exact <= got <= exact | maybe, (student, {c: checks[c]["message"] for c in got})
    total = sum(float(r["points"]) for c, r in checks.items() if c != "TOTAL")
    assert float(checks["TOTAL"]["points"]) == pytest.approx(total)
    if not exact:
        assert total == pytest.approx(4.0), {c: checks[c]["message"] for c in got}


def test_honest_rows_are_those_of_a_class_without_attackers(graded):
    rows = read_grades(graded["out"])
    for student in ("honest_a", "honest_b"):
        assert {c: (r["points"], r["message"]) for c, r in rows[student].items()} == {
            c: (r["points"], r["message"]) for c, r in rows["honest_a"].items()}
        assert rows[student]["TOTAL"]["points"] == "4" and rows[student]["TOTAL"]["message"] == ""


def test_the_gradebook_holds_the_trusted_scores_only(graded):
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    rows = read_grades(graded["out"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)
        with Gradebook(f"sqlite:///{graded['out'] / 'gradebook.db'}", "metric-lab") as gb:
            assert sorted(s.id for s in gb.students) == sorted(rows)
            for student, checks in rows.items():
                submission = gb.find_submission(LAB, student)
                assert submission.score == pytest.approx(float(checks["TOTAL"]["points"])), student
                for notebook in submission.notebooks:
                    assert all(grade.manual_score is None for grade in notebook.grades), student


def test_nothing_outside_the_sandbox_changed(graded):
    for before, after, what in zip(graded["before"], graded["after"], ("repository", "submissions", "canary")):
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        assert not changed, (what, sorted(changed)[:20])
    assert graded["listener"].received == []
    assert graded["signals"] == []
    # what the writers wrote ("pwned") is nowhere on disk: not in the grader's output and work folders
    # (the course copies are kept), not in the repository
    for top in (graded["root"], REPO):
        for folder, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if d not in (".git", ".venv")]
            for name in files:
                path = Path(folder) / name
                assert path.is_symlink() or path.stat().st_size != 5 or path.read_bytes() != b"pwned", path


def test_no_secret_reaches_a_feedback_page(graded):
    out = graded["out"]
    for student in graded["cases"]:
        text = feedback_text(out, student)
        assert text, student
        assert SECRET not in text, student
        for forbidden in FORBIDDEN_TEXT:
            assert forbidden not in text, (student, forbidden)


def test_the_attacks_ran_and_were_stopped(graded):
    """The hostile cells did run (their output is in their own feedback) and met the sandbox."""
    out = graded["out"]
    reads = printed(out, "cell_reads")
    assert "DENIED ../../../gradebook.db" in reads and "NOIMPORT ModuleNotFoundError" in reads
    assert "READ " not in reads and "PROC " in reads  # /proc holds the sandbox's own processes only
    assert f"DENIED {REPO}/models/mnist_triplet.pt PermissionError" in reads  # the course's Lab 2 network
    others = next(line for line in reads.splitlines() if line.startswith("OTHERS"))
    assert not any(student in others for student in graded["cases"] if student != "cell_reads"), others
    writes = printed(out, "cell_writes")
    assert "WROTE pwned.txt" in writes and "WROTE /tmp/pwned.txt" in writes  # inside, gone with the sandbox
    assert "TAMPERED" not in writes and "NOBIG ." in writes and "NOBIG /tmp" in writes
    escape = printed(out, "cell_escape")
    assert "NONET " in escape and "CONNECTED" not in escape
    if sandbox.status()["fork_limit"].startswith("pids cgroup"):
        assert "FORKS STOPPED " in escape
    rows = read_grades(out)
    assert "notes.txt is a symbolic link: not graded" in rows["cell_reads"]["TOTAL"]["message"]
    assert "course is a symbolic link: not graded" in rows["cell_reads"]["TOTAL"]["message"]
    assert any("wrote more than" in r["message"] for r in rows["disk_bomb"].values())
    assert any("No such file" in r["message"] for r in rows["from_file"].values())


def test_an_unconfined_worker_would_leak_the_reference(tmp_path):
    """The from_file attack is real: with the sandbox off the worker reads the reference solution."""
    from autograder.grading.trusted import default_limits, grade_submission

    path = build.write_submission(tmp_path / "s", LAB, replace=build.snippet_functions(HOSTILE / "from_file.py"))
    open_result = grade_submission(path, LAB, workroot=tmp_path, limits=default_limits(sandboxed=False))
    jailed_result = grade_submission(path, LAB, workroot=tmp_path, limits=default_limits(sandboxed=True))
    leaked = [c["message"] for c in open_result["checks"] if "Lab 1 reference" in c["message"]]
    assert leaked, "the attack no longer reads the reference: the test would not see a broken sandbox"
    assert not any("Lab 1 reference" in c["message"] for c in jailed_result["checks"])
