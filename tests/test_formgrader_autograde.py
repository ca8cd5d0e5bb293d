"""formgrader's Autograde in the instructor's course runs the kit's trusted pipeline, tried as an attacker.

A temporary nbgrader course is configured as ``course up`` configures the instructor's
(:func:`autograder.hub.course.write_course_config`: the kit's ``nbgrader_config.py`` with its
autograde block) and Lab 1 generated in it. Three submissions go into ``submitted/``: the reference
solution, a forger (a loop in ``distances``, which costs one check; ``run_public_checks`` replaced
by one that prints success and raises nothing, which stock nbgrader scores as full points; a test
cell's source and points edited; writes aimed at the gradebook, the course folder and the source
notebook; a read of the solution) and a typical mistake. Each is autograded as formgrader's
Autograde button does it: ``NbGraderAPI.autograde(lab, student)`` in this process, with the
configuration formgrader loads. The gradebook then holds the trusted points only: the solution the
spec's automatic total, the forger and the mistake exactly what their code earns; the report cells
wait for manual grading with their spec points; the course's files are as the trusted side left them.
Skipped without MNIST or without the OS sandbox. About 60 s on a 2-core machine.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "submissions"))
import build  # noqa: E402
from gradebook_rows import mnist_available  # noqa: E402

from autograder.hub.course import write_course_config
from autograder.paths import COURSE_DIR
from labtools import sandbox
from labtools.labs import lab as lab_spec

LAB = "lab1_retrieval"

pytestmark = [
    pytest.mark.skipif(not mnist_available(), reason="no MNIST under LABTOOLS_DATA (set it to the datasets root)"),
    pytest.mark.skipif(sandbox.unavailable_reason() is not None, reason=f"no OS sandbox: {sandbox.unavailable_reason()}"),
    pytest.mark.skipif(not (COURSE_DIR / "source" / LAB / f"{LAB}.ipynb").is_file(),
                       reason="no source notebooks in autograder/course/source"),
]

FORGED = "FORGED-BY-THE-STUDENT"

#: Appended to the forger's ``distances`` cell: runs in the autograde kernel (and, being top-level
#: code of a solution cell, is what the trusted checks may see too).
ATTACK = '''
import labtools.checks as _checks


def _forged_checks(*args, **kwargs):
    print("All public checks passed: 1.5/1.5 points")


_checks.run_public_checks = _forged_checks
run_public_checks = _forged_checks
for _target in [{gradebook!r}, {course!r} + "/pwned.txt", {source!r} + "/pwned.txt", "../../../gradebook.db",
                "../../../pwned.txt", "../../../source/{lab}/pwned.txt"]:
    try:
        with open(_target, "a") as _handle:
            _handle.write("{forged}")
        print("WROTE", _target)
    except Exception as _error:
        print("blocked:", type(_error).__name__)
try:
    print("SOLUTION:", open({source!r} + "/{lab}.ipynb").read())
except Exception as _error:
    print("blocked:", type(_error).__name__)
'''


def _api(root: Path):
    """nbgrader's API as formgrader builds it: an app initialized with the course folder as its root
    (which loads the course's ``nbgrader_config.py``), the API its child."""
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.apps.baseapp import NbGrader
    from nbgrader.auth import Authenticator

    app = NbGrader()
    app.initialize([], root=str(root))
    return NbGraderAPI(app.coursedir, Authenticator(parent=app), parent=app)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _submit(root: Path, student: str, replace=None, edit=None) -> None:
    folder = root / "submitted" / student / LAB
    path = build.write_submission(folder, LAB, replace, course=root)
    if edit is not None:
        import nbformat

        nb = nbformat.read(path, as_version=4)
        edit(nb)
        nbformat.write(nb, path)
    (folder / "timestamp.txt").write_text("2025-01-15 10:00:00.000000 UTC")


def _lost_points(lost: set[str]) -> dict[str, float]:
    """``{function: points}`` that the checks ``lost`` cost, per graded function."""
    import autograder.grading.hidden  # noqa: F401  (registers the hidden checks)
    from labtools.checks.registry import checks_for

    checks = {c.id: c for c in checks_for(LAB, hidden=None)}
    assert lost <= set(checks), lost - set(checks)
    cost: dict[str, float] = {}
    for check in lost:
        cost[checks[check].function] = cost.get(checks[check].function, 0.0) + checks[check].points
    return cost


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    from autograder.grading import nbrun

    nbrun.preload()  # the gradebook's schema version read in this process (alembic's command needs no PATH)
    root = tmp_path_factory.mktemp("course")
    write_course_config(root)  # the instructor's course as `course up` writes it
    shutil.copytree(COURSE_DIR / "source" / LAB, root / "source" / LAB)
    api = _api(root)
    assert api.generate_assignment(LAB, force=True, create=True)["success"]
    source = root / "source" / LAB
    attack = ATTACK.format(gradebook=str(root / "gradebook.db"), course=str(root), source=str(source), lab=LAB,
                           forged=FORGED)
    loop = build.mistake_code(LAB, "distances_loop")

    def answer(nb):  # the written answers (an unanswered one nbgrader scores 0 itself)
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id", "") in lab_spec(LAB).report_points:
                cell.source = "The answer, in the student's words."

    def tamper(nb):  # a test cell that prints success, with more points
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_evaluate_AP")
        cell.source = 'print("evaluate_AP: 1.5/1.5 points")'
        cell.metadata["nbgrader"]["points"] = 100

    _submit(root, "solution", edit=answer)
    _submit(root, "forger", {"distances": loop["distances"] + attack}, edit=tamper)
    _submit(root, "mistake", build.mistake_code(LAB, "ap_off_by_one"), edit=answer)
    before = {k: v for k, v in _tree(root).items() if not k.startswith(("gradebook.db", "autograded"))}
    results = {student: _api(root).autograde(LAB, student) for student in ("solution", "forger", "mistake")}
    return root, results, before


def _grades(root: Path, student: str) -> dict[str, object]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        notebook = gb.find_submission_notebook(LAB, LAB, student)
        return {g.name: (g.auto_score, g.max_score, g.needs_manual_grade) for g in notebook.grades}


def _check_student(root: Path, results: dict, student: str, lost: set[str], answered: bool = True) -> dict:
    assert results[student]["success"], results[student].get("log", "")[-3000:]
    spec = lab_spec(LAB)
    grades = _grades(root, student)
    cost = _lost_points(lost)
    for function, points in spec.test_points.items():
        auto, max_score, manual = grades[f"test_{function}"]
        assert (max_score, manual) == (points, False)
        assert auto == pytest.approx(points - cost.get(function, 0.0)), (student, function, grades)
    for cell, points in spec.report_points.items():  # written answers: formgrader's manual grading
        expected = (None, points, True) if answered else (0.0, points, False)
        assert grades[cell] == expected, (student, cell, grades[cell])
    autograded = root / "autograded" / student / LAB / f"{LAB}.ipynb"
    assert autograded.is_file()
    assert (root / "trusted" / student / LAB / f"{LAB}.json").is_file()  # the kit's per-check results, kept
    return grades


def test_reference_solution_earns_the_automatic_total(course):
    root, results, _ = course
    grades = _check_student(root, results, "solution", set())
    spec = lab_spec(LAB)
    assert sum(grades[f"test_{f}"][0] for f in spec.test_points) == pytest.approx(spec.total) == 4.0


def test_mistake_loses_exactly_its_checks(course):
    root, results, _ = course
    lost = build.mistakes(LAB)["ap_off_by_one"].lost
    _check_student(root, results, "mistake", set(lost))


def test_forger_earns_only_what_its_code_earns(course):
    import nbformat

    root, results, before = course
    # stock nbgrader would give 4.0 (no test cell raises); the loop truly costs distances.vectorized
    grades = _check_student(root, results, "forger", set(build.mistakes(LAB)["distances_loop"].lost), answered=False)
    assert grades["test_evaluate_AP"][1] == 1.5  # the edited points were put back
    nb = nbformat.read(root / "autograded" / "forger" / LAB / f"{LAB}.ipynb", as_version=4)
    outputs = "".join(str(o.get("text", "")) + str(o.get("data", "")) for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    # the kernel ran the attack, in the sandbox: the solution unreadable; a write "succeeds" only where the
    # course's path lies under /tmp, into the sandbox's own /tmp (test_course_folder_untouched_by_student_code)
    assert outputs.count("WROTE ") + outputs.count("blocked:") == 7, outputs[-3000:]
    assert "BEGIN SOLUTION" not in outputs and "SOLUTION: {" not in outputs
    tests = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade", False)
             and c.cell_type == "code"}
    for cell in tests.values():  # the test cells' outputs are the trusted checks' lines, not the forged ones
        text = "".join(o.get("text", "") for o in cell.outputs)
        assert "All public checks passed" not in text and "points" in text
    assert 'print("evaluate_AP' not in tests["test_evaluate_AP"].source


def test_course_folder_untouched_by_student_code(course):
    root, _, before = course
    after = {k: v for k, v in _tree(root).items() if k in before}
    assert after == before  # sources, release, submissions: byte for byte
    assert not list(root.rglob("pwned.txt"))
    assert FORGED.encode() not in (root / "gradebook.db").read_bytes()
    with sqlite3.connect(root / "gradebook.db") as db:
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)


def test_formgrader_lists_the_autograded_submissions(course):
    root, _, _ = course
    submissions = {s["student"]: s for s in _api(root).get_submissions(LAB)}
    assert all(submissions[s]["autograded"] for s in ("solution", "forger", "mistake")), submissions
    assert submissions["solution"]["needs_manual_grade"]  # the report cells


def test_feedback_shows_the_trusted_checks(course):
    root, _, _ = course
    assert _api(root).generate_feedback(LAB, "mistake")["success"]
    page = (root / "feedback" / "mistake" / LAB / f"{LAB}.html").read_text()
    cost = _lost_points(set(build.mistakes(LAB)["ap_off_by_one"].lost))
    for function, points in lab_spec(LAB).test_points.items():  # each test cell's trusted summary line
        assert f"{function}: {points - cost.get(function, 0.0):g}/{points:g} points" in page
    assert "should have AP 1" in page  # a check's own message
