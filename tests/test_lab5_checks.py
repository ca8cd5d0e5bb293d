"""The Lab 5 checks in the sandbox: the reference earns every point, each mistake loses its checks.

The checks run on the reference module's source (its functions as a student would paste them)
and on versions of it with one mistake edited in; a mistake in a helper also costs the checks of
the functions that call it (dvml_loss uses the student's kl_divergence and semihard_triplet_loss).
"""

import inspect

import pytest

from autograder.grading.trusted import default_limits
from autograder.reference import lab1, lab5
from labtools.checks import TEST_CELL_POINTS, checks_for
from labtools.checks.engine import check_source

LAB = "lab5_dvml"
#: Mistakes as (old, new) edits of the reference's source, and the checks each must lose.
MISTAKES = {
    "kl_summed_over_the_batch": ([("(logvar.exp() + mu.square() - 1 - logvar).sum(dim=1).mean()",
                                   "(logvar.exp() + mu.square() - 1 - logvar).sum()")],
                                 {"kl_divergence.hand_example", "kl_divergence.hidden_fixed",
                                  "kl_divergence.hidden_random", "dvml_loss.kl_and_reconstruction",
                                  "dvml_loss.hidden_fixed", "dvml_loss.hidden_random"}),
    "sigma_is_exp_logvar": ([("return mu + (0.5 * logvar).exp() * eps", "return mu + logvar.exp() * eps")],
                            {"reparameterize.moments", "reparameterize.hidden_fixed"}),
    "hard_negatives_too": ([(" & (an > ap) & ", " & ")],
                           {"semihard_triplets.hand_example", "semihard_triplets.margin",
                            "semihard_triplets.hidden_fixed", "semihard_triplets.hidden_random",
                            "semihard_triplet_loss.hand_example", "semihard_triplet_loss.hidden_fixed",
                            "semihard_triplet_loss.hidden_random", "dvml_loss.triplet_terms",
                            "dvml_loss.hidden_fixed", "dvml_loss.hidden_random"}),
    "hinges_summed": ([("return hinge.sum() / max(len(a), 1)", "return hinge.sum()")],
                      {"semihard_triplet_loss.hand_example", "semihard_triplet_loss.hidden_fixed",
                       "semihard_triplet_loss.hidden_random", "dvml_loss.triplet_terms",
                       "dvml_loss.hidden_fixed", "dvml_loss.hidden_random"}),
    "reconstruction_summed": ([('"reconstruction": F.mse_loss(reconstruction, features.detach()),',
                                '"reconstruction": F.mse_loss(reconstruction, features.detach(), reduction="sum"),')],
                              {"dvml_loss.kl_and_reconstruction", "dvml_loss.hidden_fixed", "dvml_loss.hidden_random"}),
}


def reference_source() -> str:
    """Lab 5's reference as a submission: its module source, Lab 1's distances instead of the import."""
    source = inspect.getsource(lab5).replace("from autograder.reference.lab1 import distances\n", "")
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
    lost = {cid: r.message for cid, r in results.items() if not r.passed}
    assert set(lost) == expected, lost
