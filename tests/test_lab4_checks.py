"""The Lab 4 checks in the sandbox: the reference earns every point, each mistake loses its checks.

Lab 4's notebook is not written yet; the checks run on the reference module's source (its
functions as a student would paste them) and on versions of it with one mistake edited in.
"""

import inspect

import pytest

from autograder.grading.trusted import default_limits
from autograder.reference import lab1, lab4
from labtools.checks import TEST_CELL_POINTS, checks_for
from labtools.checks.engine import check_source

LAB = "lab4_beyond"
#: Mistakes as (old, new) edits of the reference's source, and the checks each must lose.
MISTAKES = {
    "recall_query_included": ([("dist.fill_diagonal_(math.inf)  # a query is not its own neighbour", "")],
                              {"recall_at_k.hand_example", "recall_at_k.leave_one_out", "recall_at_k.singletons",
                               "recall_at_k.hidden_fixed", "recall_at_k.hidden_random"}),
    "nmi_max_normalization": ([("(mutual_information / ((h_labels + h_clusters) / 2))",
                                "(mutual_information / torch.maximum(h_labels, h_clusters))")],
                              {"nmi.hidden_fixed", "nmi.hidden_random"}),  # equal entropies in the public examples
    "head_with_learned_layer_norm": ([("x = F.layer_norm(x, x.shape[-1:])", "x = F.normalize(x, dim=1) * 4")],
                                     {"NormSoftmax.layer_norm", "NormSoftmax.hidden_random"}),
    "arcface_margin_on_the_cosine": ([("torch.cos(theta + margin)", "true_cos - margin")],
                                     {"arcface_loss.hand_example", "arcface_loss.hidden_fixed",
                                      "arcface_loss.hidden_random"}),
}


def reference_source() -> str:
    """Lab 4's reference as a submission: its module source, Lab 1's distances instead of the import."""
    source = inspect.getsource(lab4).replace("from autograder.reference.lab1 import distances\n", "")
    return source + "\n\n" + inspect.getsource(lab1.distances)


def grade(source, tmp_path):
    import autograder.grading.hidden  # noqa: F401  (registers the hidden checks)

    hidden = checks_for(LAB, hidden=True)
    results = check_source(source, LAB, limits=default_limits(), extra_checks=hidden, workroot=tmp_path)
    return {r.check.id: r for r in results}


def test_points_of_every_function_add_up():
    import autograder.grading.hidden  # noqa: F401

    for function, points in TEST_CELL_POINTS[LAB].items():
        assert sum(c.points for c in checks_for(LAB, function)) == pytest.approx(points), function


def test_the_reference_earns_every_point(tmp_path):
    results = grade(reference_source(), tmp_path)
    failed = {cid: r.message for cid, r in results.items() if not r.passed}
    assert not failed, failed
    assert sum(r.earned for r in results.values()) == pytest.approx(sum(TEST_CELL_POINTS[LAB].values()))


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_mistake_loses_exactly_its_checks(tmp_path, mistake):
    edits, expected = MISTAKES[mistake]
    source = reference_source()
    for old, new in edits:
        assert old in source, old
        source = source.replace(old, new)
    results = grade(source, tmp_path)
    assert {cid for cid, r in results.items() if not r.passed} == expected
