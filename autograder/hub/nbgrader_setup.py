"""Run as the instructor, in the course folder: put the students in the gradebook, generate and release labs.

``python -m autograder.hub.nbgrader_setup --students student01 student02 --labs lab1_retrieval ...``
(:func:`autograder.hub.course.setup_course` runs it with ``runuser -u instructor``, so that the
exchange's files belong to the instructor). nbgrader's configuration is read as the formgrader reads
it: ``~/.jupyter/nbgrader_config.py`` (course id, exchange, course folder), then the course folder's
own ``nbgrader_config.py``. Each lab is generated (``generate_assignment``: the gradebook learns its
cells and points) and released to the exchange (``release_assignment``) unless it is already there.
Prints one JSON object: ``{"max_score": {lab: points}, "generated": [...], "released": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from autograder.nbgrader_cli import skip_slow_optional_imports


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.hub.nbgrader_setup", description=__doc__)
    parser.add_argument("--students", nargs="*", default=[])
    parser.add_argument("--labs", nargs="+", required=True)
    args = parser.parse_args(argv)
    skip_slow_optional_imports()
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.apps.baseapp import NbGrader
    from nbgrader.coursedir import CourseDirectory

    app = NbGrader()
    app.load_config_file()
    config = app.config
    config.ExchangeReleaseAssignment.force = True
    coursedir = CourseDirectory(config=config)
    api = NbGraderAPI(coursedir=coursedir, config=config)
    outbound = Path(api.exchange_root) / api.course_id / "outbound"
    done = {"generated": [], "released": [], "max_score": {}}
    gradebook = api.gradebook
    try:
        for student in args.students:
            gradebook.update_or_create_student(student)
        known = {a.name for a in gradebook.assignments}
    finally:
        gradebook.close()
    for lab in args.labs:
        if lab not in known or not (Path(coursedir.root) / "release" / lab / f"{lab}.ipynb").is_file():
            result = api.generate_assignment(lab, force=True, create=True)
            if not result["success"]:
                print(f"nbgrader generate_assignment {lab} failed:\n{result.get('error') or result.get('log')}",
                      file=sys.stderr)
                return 1
            done["generated"].append(lab)
        if not (outbound / lab).is_dir():
            result = api.release_assignment(lab)
            if not result["success"]:
                print(f"nbgrader release_assignment {lab} failed:\n{result.get('error') or result.get('log')}",
                      file=sys.stderr)
                return 1
            done["released"].append(lab)
    gradebook = api.gradebook
    try:
        done["max_score"] = {lab: gradebook.find_assignment(lab).max_score for lab in args.labs}
    finally:
        gradebook.close()
    print(json.dumps(done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
