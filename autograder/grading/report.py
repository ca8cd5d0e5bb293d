"""The report of a graded class: the gradebook, the feedback pages, grades.csv, the histogram, the printed table.

Every number here is a trusted result (one dict per student, as
:func:`autograder.grading.run.grade_one` returns it); nothing a notebook printed is read.
"""

from __future__ import annotations

import csv
import html
import shutil
import sys
from pathlib import Path


def write_feedback(course: Path, out: Path, student: str, lab: str, results: dict) -> None:
    """``out/feedback/<student>/``: the pages nbgrader generated in the course copy ``course``, or a
    plain page of the trusted results where it generated none."""
    feedback = out / "feedback" / student
    feedback.mkdir(parents=True, exist_ok=True)
    produced = list((course / "feedback" / student / lab).glob("*.html"))
    for page in produced:
        shutil.copy(page, feedback / page.name)
    if not produced:
        (feedback / f"{lab}.html").write_text(plain_feedback(student, lab, results))


def plain_feedback(student: str, lab: str, results: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(c['check'])}</td><td>{c['points']:g}/{c['max_points']:g}</td>"
                   f"<td>{html.escape(c['message'])}</td></tr>" for c in results["checks"])
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in results.get("notes", []))
    return (f"<html><body><h1>{html.escape(lab)}: {html.escape(student)}</h1>{notes}"
            f"<table><tr><th>check</th><th>points</th><th>message</th></tr>{rows}</table></body></html>")


def init_gradebook(gradebook: Path, base: Path) -> None:
    """Start ``gradebook`` from the course copy ``base``'s (which knows the assignment's cells), unless it exists."""
    if not gradebook.exists():
        shutil.copy(base / "gradebook.db", gradebook)


def merge(gradebook: Path, lab: str, results: dict) -> None:
    """Write one student's trusted cell grades into the main gradebook (sequentially).

    nbgrader's own ``add_submission`` emits SQLAlchemy "not in session" warnings (objects built
    before ``db.add``); they are harmless and silenced here.
    """
    import warnings

    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)
        with Gradebook(f"sqlite:///{gradebook}", "metric-lab") as gb:
            gb.update_or_create_student(results["student"])
            submission = gb.update_or_create_submission(lab, results["student"])
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    cell = results["cells"].get(grade.name)
                    if cell is not None:  # the trusted result, whatever was there before
                        grade.auto_score = min(float(cell["points"]), float(grade.max_score))
                        grade.manual_score = None
                        grade.needs_manual_grade = False
            gb.db.commit()


def total(results: dict) -> float:
    return sum(c["points"] for c in results["checks"])


def write_grades_csv(path: Path, lab: str, results: list[dict], maximum: float, sandboxed: bool) -> None:
    """One row per check and a ``TOTAL`` row (the student's notes as its message) per student."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "lab", "check", "points", "max_points", "message", "sandbox"])
        where = "bubblewrap" if sandboxed else "not sandboxed"
        for r in results:
            for c in r["checks"]:
                writer.writerow([r["student"], lab, c["check"], f"{c['points']:g}", f"{c['max_points']:g}",
                                 c["message"], where])
            writer.writerow([r["student"], lab, "TOTAL", f"{total(r):g}", f"{maximum:g}", "; ".join(r.get("notes", [])),
                             where])


def histogram(totals: list[float], maximum: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(totals, bins=max(5, min(20, len(totals))), range=(0, maximum), color="tab:blue")
    ax.set_xlabel(f"points (of {maximum:g})")
    ax.set_ylabel("students")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def print_table(lab: str, results: list[dict], out: Path, sandboxed: bool) -> None:
    """Each student's points and seconds, then a warning (on stderr) if the grader failed to run a check."""
    print(f"{'student':24} {'points':>8}  seconds" + ("" if sandboxed else "  (NOT SANDBOXED)"))
    for r in results:
        print(f"{r['student'][:24]:24} {total(r):8.2f}  {r.get('seconds', 0):.1f}" + ("" if sandboxed else
                                                                                        "  not sandboxed"))
    print(f"{len(results)} submission(s) of {lab} graded; results in {out}")
    failed = [(r["student"], c) for r in results for c in r["checks"] if c.get("grader_error")]
    if failed:
        student, check = failed[0]
        print(f"WARNING: the grader could not run {len(failed)} check(s) (their zeros are not the students'); "
              f"fix the cause and grade again. First: {student}, {check['check']}: {check['message']}",
              file=sys.stderr)


def write_report(lab: str, results: list[dict], out: Path, maximum: float, sandboxed: bool) -> None:
    """``out/grades.csv`` and ``out/histogram.png`` of the class's ``results`` (sorted by student), and the table."""
    write_grades_csv(out / "grades.csv", lab, results, maximum, sandboxed)
    histogram([total(r) for r in results], maximum, out / "histogram.png")
    print_table(lab, results, out, sandboxed)
