"""Labs 4 and 5 in the sandbox: the reference earns every point, each mistake loses exactly its checks.

The checks run on a reference module's source (its functions as a student would paste them, Lab
1's ``distances`` instead of the import) and on versions of it with one mistake edited in. A
mistake in a helper also costs the checks of the functions that call it (Lab 5's dvml_loss uses
the student's kl_divergence and semihard_triplet_loss). The notebooks' own samples are graded
end to end in test_grading_e2e.py.
"""

import inspect

import pytest

from autograder.grading.trusted import default_limits
from autograder.reference import lab1, lab4, lab5
from labtools.checks import TEST_CELL_POINTS, checks_for
from labtools.checks.engine import check_source

REFERENCES = {"lab4_beyond": lab4, "lab5_dvml": lab5}
#: Mistakes as (old, new) edits of the reference's source, and the checks each must lose.
MISTAKES = {
    "lab4_beyond": {
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
    },
    "lab5_dvml": {
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
    },
}


def reference_source(lab) -> str:
    """A lab's reference as a submission: its module source, Lab 1's distances instead of the import."""
    source = inspect.getsource(REFERENCES[lab]).replace("from autograder.reference.lab1 import distances\n", "")
    return source + "\n\n" + inspect.getsource(lab1.distances)


def grade(source, lab, tmp_path):
    import autograder.grading.hidden  # noqa: F401  (registers the hidden checks)

    results = check_source(source, lab, limits=default_limits(), extra_checks=checks_for(lab, hidden=True),
                           workroot=tmp_path)
    return {r.check.id: r for r in results}


@pytest.mark.parametrize("lab", sorted(REFERENCES))
def test_points_of_every_function_add_up(lab):
    import autograder.grading.hidden  # noqa: F401

    for function, points in TEST_CELL_POINTS[lab].items():
        assert sum(c.points for c in checks_for(lab, function)) == pytest.approx(points), function


@pytest.mark.parametrize("lab", sorted(REFERENCES))
def test_the_reference_earns_every_point(lab, tmp_path):
    results = grade(reference_source(lab), lab, tmp_path)
    failed = {cid: r.message for cid, r in results.items() if not r.passed}
    assert not failed, failed
    assert sum(r.earned for r in results.values()) == pytest.approx(sum(TEST_CELL_POINTS[lab].values()))


@pytest.mark.parametrize("lab, mistake", [(lab, m) for lab in sorted(MISTAKES) for m in sorted(MISTAKES[lab])])
def test_each_mistake_loses_exactly_its_checks(lab, mistake, tmp_path):
    edits, expected = MISTAKES[lab][mistake]
    source = reference_source(lab)
    for old, new in edits:
        assert old in source, old
        source = source.replace(old, new)
    results = grade(source, lab, tmp_path)
    lost = {cid: r.message for cid, r in results.items() if not r.passed}
    assert set(lost) == expected, lost
