"""``python -m autograder grade <lab_id> <submissions> [--out DIR] [--jobs N]``.

:func:`grade` takes the class in (:mod:`.intake`: a folder, nbgrader's ``submitted/``, a zip, an
LMS export), grades each submission in its own course copy (:mod:`.run`: the trusted checks in the
sandboxed engine, real ``nbgrader autograde`` with RobustExecute and TrustedGrades, and
``generate_feedback``), ``--jobs`` at a time, and reports (:mod:`.report`): the results merged one
by one into ``DIR/gradebook.db`` with nbgrader's Gradebook API, ``DIR/grades.csv``,
``DIR/feedback/<student>/``, ``DIR/histogram.png``, a table, then the similarity report.

Grades come from the trusted checks only (the notebook's own outputs never decide a point); the
notebook is executed for the feedback page. Before nbgrader sees it, its nbgrader metadata is
repaired (deleted locked cells put back, edited metadata restored) so that nbgrader can always
process it. A function that timed out in the sandbox gets short cell time-outs in the notebook;
RobustExecute stops executing after a dead kernel or a time-out. Nothing is written into the
course folder given with ``--course``: each run works in ``DIR``.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from autograder.grading import nbrun
from autograder.grading.intake import collect
from autograder.grading.report import init_gradebook, merge, write_report
from autograder.grading.run import grade_one, grader_failure, prepare_base, start_warming_data, wait_for_data
from autograder.paths import COURSE_DIR


def grade(lab: str, submissions: Path, out: Path, jobs: int = 1, course: Path = COURSE_DIR,
          time_limit: float = 600.0, keep_work: bool = False, sandboxed: bool = True,
          similarity: bool = True) -> list[dict]:
    from labtools.labs import all_labs
    from labtools.sandbox import SandboxUnavailable, require

    nbrun.preload()  # before the pool's workers fork: they fork nbgrader's runs in turn
    out, submissions, course = Path(out).resolve(), Path(submissions).resolve(), Path(course).resolve()
    if lab not in all_labs():
        raise SystemExit(f"unknown lab {lab!r}")
    if sandboxed:
        try:
            require()
        except SandboxUnavailable as error:
            raise SystemExit(f"cannot grade: the OS sandbox for student code is not available: {error}. "
                             "Grading without it (--no-sandbox) runs every submission with your rights.")
    if not (course / "source" / lab / f"{lab}.ipynb").is_file():
        raise SystemExit(f"no source notebook {course / 'source' / lab / (lab + '.ipynb')}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "work").mkdir(exist_ok=True)
    warming = start_warming_data()
    base = prepare_base(lab, course, out)
    wait_for_data(warming)
    items = collect(lab, submissions, Path(tempfile.mkdtemp(prefix="collect-", dir=out / "work")))
    gradebook = out / "gradebook.db"
    init_gradebook(gradebook, base)
    results: list[dict] = []
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(grade_one, lab, s, str(f), str(nb) if nb else None, notes, str(base), str(out),
                               time_limit, keep_work, sandboxed): s for s, f, notes, nb in items}
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as error:  # the grader's own failure for this student
                result = grader_failure(lab, futures[future], error, sandboxed)
            merge(gradebook, lab, result)
            results.append(result)
    results.sort(key=lambda r: r["student"])
    spec = all_labs()[lab]
    write_report(lab, results, out, spec.total, sandboxed)
    if spec.report_total:
        print(f"the points above are the automatic checks' ({spec.total:g}); the report's {spec.report_total:g} "
              f"(answer cells {', '.join(spec.report_points)}) are graded by hand in formgrader, "
              f"out of {spec.max_score:g} in all")
    if similarity:  # flags only: after the grades are written, it changes none of them
        from autograder.similarity import report

        report(lab, items, out, base / "release" / lab / f"{lab}.ipynb")
    return results
