"""Every lab in the sandbox: the reference earns every point, each typical mistake loses exactly its checks.

The checks run on a reference module's source (its functions as a student would paste them, Lab
1's ``distances`` instead of the import) and on versions of it with one of the lab's typical
mistakes (``tests/labs/mistakes/<lab>.py``, through ``build.mistake_code``) in place of the
functions it changes. The file checks of a submitted checkpoint (Lab 2's triplet_net.pt) are left
out: tests/labs/test_lab2_triplet.py tests them. The same mistakes are graded as notebooks, end to
end, in tests/test_grading_e2e.py.
"""

import importlib
import inspect
import sys
from pathlib import Path

import pytest

from autograder.grading.trusted import default_limits
from autograder.labs.lab1_retrieval import reference as lab1
from labtools import labs
from labtools.checks import checks_for
from labtools.checks.engine import check_source

sys.path.insert(0, str(Path(__file__).parents[1] / "submissions"))
import build  # noqa: E402

REFERENCES = {lab: importlib.import_module(f"autograder.labs.{lab}.reference") for lab in labs.lab_ids()}
#: The kind of the checks of a submitted file, left out here.
FILE_CHECKS = "file"


def reference_source(lab) -> str:
    """A lab's reference as a submission: its module source, Lab 1's distances instead of the import."""
    source = inspect.getsource(REFERENCES[lab])
    imported = "from autograder.labs.lab1_retrieval.reference import distances\n"
    if imported in source:
        source = source.replace(imported, "") + "\n\n" + inspect.getsource(lab1.distances)
    return source


def grade(source, lab, tmp_path):
    """``{check id: result}`` of the lab's public and hidden checks of code on ``source``; skips when
    the grader cannot prepare a check here (Lab 1's classifier check needs MNIST)."""
    import autograder.grading.hidden  # noqa: F401  (registers the hidden checks)

    hidden = [c for c in checks_for(lab, hidden=True) if c.kind != FILE_CHECKS]
    results = {r.check.id: r for r in check_source(source, lab, limits=default_limits(), extra_checks=hidden,
                                                   workroot=tmp_path) if r.check.kind != FILE_CHECKS}
    unprepared = {cid: r.message for cid, r in results.items() if r.grader_error}
    if unprepared:
        pytest.skip(f"the grader cannot prepare {unprepared} here")
    return results


@pytest.mark.parametrize("lab", labs.lab_ids())
def test_points_of_every_function_add_up(lab):
    import autograder.grading.hidden  # noqa: F401

    for function, points in labs.lab(lab).test_points.items():
        assert sum(c.points for c in checks_for(lab, function)) == pytest.approx(points), function


@pytest.mark.parametrize("lab", labs.lab_ids())
def test_the_reference_earns_every_point(lab, tmp_path):
    results = grade(reference_source(lab), lab, tmp_path)
    failed = {cid: r.message for cid, r in results.items() if not r.passed}
    assert not failed, failed
    file_points = sum(c.points for c in checks_for(lab) if c.kind == FILE_CHECKS)
    assert sum(r.earned for r in results.values()) == pytest.approx(
        sum(labs.lab(lab).test_points.values()) - file_points)


@pytest.mark.parametrize("lab, mistake", [(lab, m) for lab in labs.lab_ids() for m in sorted(build.mistakes(lab))])
def test_each_mistake_loses_exactly_its_checks(lab, mistake, tmp_path):
    source, reference = reference_source(lab), build.reference_code()
    for function, code in build.mistake_code(lab, mistake).items():
        assert reference[function] in source, function
        source = source.replace(reference[function], code)
    results = grade(source, lab, tmp_path)
    lost = {cid: r.message for cid, r in results.items() if not r.passed}
    assert set(lost) == build.mistakes(lab)[mistake].lost, lost
