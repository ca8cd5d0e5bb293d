"""Labs 4 and 5 in the sandbox: the reference earns every point, each mistake loses exactly its checks.

The checks run on a reference module's source (its functions as a student would paste them, Lab
1's ``distances`` instead of the import) and on versions of it with one mistake of
``submissions/build.py``'s table edited in. The same mistakes are graded as notebooks, end to end,
in test_grading_e2e.py.
"""

import inspect
import sys
from pathlib import Path

import pytest

from autograder.grading.trusted import default_limits
from autograder.labs.lab1_retrieval import reference as lab1
from autograder.labs.lab4_beyond import reference as lab4
from autograder.labs.lab5_dvml import reference as lab5
from labtools import labs
from labtools.checks import checks_for
from labtools.checks.engine import check_source

sys.path.insert(0, str(Path(__file__).parent / "submissions"))
from build import MISTAKES  # noqa: E402

REFERENCES = {"lab4_beyond": lab4, "lab5_dvml": lab5}


def reference_source(lab) -> str:
    """A lab's reference as a submission: its module source, Lab 1's distances instead of the import."""
    source = inspect.getsource(REFERENCES[lab]).replace("from autograder.labs.lab1_retrieval.reference import distances\n", "")
    return source + "\n\n" + inspect.getsource(lab1.distances)


def grade(source, lab, tmp_path):
    import autograder.grading.hidden  # noqa: F401  (registers the hidden checks)

    results = check_source(source, lab, limits=default_limits(), extra_checks=checks_for(lab, hidden=True),
                           workroot=tmp_path)
    return {r.check.id: r for r in results}


@pytest.mark.parametrize("lab", sorted(REFERENCES))
def test_points_of_every_function_add_up(lab):
    import autograder.grading.hidden  # noqa: F401

    for function, points in labs.lab(lab).test_points.items():
        assert sum(c.points for c in checks_for(lab, function)) == pytest.approx(points), function


@pytest.mark.parametrize("lab", sorted(REFERENCES))
def test_the_reference_earns_every_point(lab, tmp_path):
    results = grade(reference_source(lab), lab, tmp_path)
    failed = {cid: r.message for cid, r in results.items() if not r.passed}
    assert not failed, failed
    assert sum(r.earned for r in results.values()) == pytest.approx(sum(labs.lab(lab).test_points.values()))


@pytest.mark.parametrize("lab, mistake", [(lab, m) for lab in sorted(REFERENCES) for m in sorted(MISTAKES[lab])])
def test_each_mistake_loses_exactly_its_checks(lab, mistake, tmp_path):
    edits, expected = MISTAKES[lab][mistake]
    source = reference_source(lab)
    for old, new in edits:
        assert old in source, old
        source = source.replace(old, new)
    results = grade(source, lab, tmp_path)
    lost = {cid: r.message for cid, r in results.items() if not r.passed}
    assert set(lost) == expected, lost
