"""Lab 5 (advanced, optional): Deep Variational Metric Learning.

Its public checks follow the spec; :func:`triplets_value` and :func:`dvml_value` read results for
the grader too.
"""

import functools
import math

import torch

from labtools.checks.builders import circle_call, points_on_circle, simple_check, unit_rows, vectorized_check
from labtools.checks.registry import Call
from labtools.judges import all_judged, close, describe_tensor, expect_loss, expect_tensor, loss_value, parsed
from labtools.labs import LabSpec, Report, Solution

__all__ = ["SPEC", "DVML_TERMS", "triplets_value", "dvml_value"]

SPEC = LabSpec(
    id="lab5_dvml",
    title="Lab 5 (advanced, optional): Deep Variational Metric Learning",
    solutions=(Solution("distances", reference="lab1_retrieval", extracted=True),
               *(Solution(name, reference="lab4_beyond") for name in ("recall_at_k", "kmeans", "contingency_table",
                                                                      "nmi", "f1")),
               Solution("kl_divergence", 1.0), Solution("reparameterize", 1.0), Solution("semihard_triplets", 1.5),
               Solution("semihard_triplet_loss", 1.0), Solution("dvml_loss", 1.5)),
    reports=(Report("report_dvml", 1.0),),
)


# ----------------------------------------------------------------------------------------------
# kl_divergence, reparameterize, semihard_triplets, semihard_triplet_loss, dvml_loss


#: dvml_loss's terms, in the order of their weights lambda1..lambda4.
DVML_TERMS = ("kl", "reconstruction", "triplet_synthesized", "triplet_invariant")


def triplets_value(value, name="semihard_triplets"):
    """``(set of (a, p, n) int triples, None)`` for three equal-length int [T] tensors, else ``(None, message)``."""
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        return None, f"{name} should return three tensors (anchors, positives, negatives), got {describe_tensor(value)}"
    for part, what in zip(value, ("anchors", "positives", "negatives")):
        if not isinstance(part, torch.Tensor) or part.ndim != 1 or part.is_floating_point() or part.dtype == torch.bool:
            return None, f"the {what} should be an integer [T] tensor of indices, got {describe_tensor(part)}"
    if not len(value[0]) == len(value[1]) == len(value[2]):
        return None, f"anchors, positives and negatives differ in length: {[len(v) for v in value]}"
    return set(zip(*(v.tolist() for v in value))), None


def dvml_value(value, name="dvml_loss"):
    """``((total, {term: float}), None)`` for dvml_loss's (0-d tensor, dict of 0-d tensors), else ``(None, message)``."""
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not isinstance(value[1], dict):
        return None, f"{name} should return (total, terms), terms a dict, got {describe_tensor(value)}"
    total, problem = loss_value(value[0], f"{name}'s total")
    if problem:
        return None, problem
    missing = sorted(set(DVML_TERMS) - set(value[1]))
    if missing:
        return None, f"{name}'s terms lack {missing} (expected the keys {list(DVML_TERMS)})"
    terms = {}
    for key in DVML_TERMS:
        terms[key], problem = loss_value(value[1][key], f"the term {key!r}")
        if problem:
            return None, problem
    return (total, terms), None


def _dvml_example() -> list:
    """dvml_loss's inputs [features, mu, logvar, z_inv, z_var, reconstruction, labels] worked by hand.

    features: rows e1, e2, e3, (1, 1, 1); the reconstruction is off by 0.5 and -1 in two entries:
    MSE (0.25 + 1) / 12. mu, logvar: one row N((1, 0), diag(1, 4)), three rows N(0, I): KL
    0.5 (1 + 4 - 1 - ln 4) / 4. z_inv: the semi-hard example of semihard_triplets (0, 15, 25, 60
    degrees, labels 0, 0, 1, 1, margin 0.2); z_inv + z_var: points at 0, 20, 25, 60 degrees, whose
    semi-hard triplets are (0, 1, 2) and (3, 2, 1).
    """
    f64 = torch.float64
    features = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=f64)
    reconstruction = features + torch.tensor([[0.5, 0, 0], [0, 0, 0], [0, 0, -1], [0, 0, 0]], dtype=f64)
    mu = torch.tensor([[1, 0], [0, 0], [0, 0], [0, 0]], dtype=f64)
    logvar = torch.tensor([[0, math.log(4)], [0, 0], [0, 0], [0, 0]], dtype=f64)
    z_inv = points_on_circle(0, 15, 25, 60)
    z_var = points_on_circle(0, 20, 25, 60) - z_inv
    return [features, mu, logvar, z_inv, z_var, reconstruction, torch.tensor([0, 0, 1, 1])]


def _gaussian_moments(b: int = 20_000) -> list:
    """mu [b, 2] rows (1, -2) and logvar rows (ln 4, ln 1/4): draws of standard deviation (2, 0.5)."""
    mu = torch.tensor([[1.0, -2.0]], dtype=torch.float64).expand(b, 2).clone()
    logvar = torch.tensor([[math.log(4.0), math.log(0.25)]], dtype=torch.float64).expand(b, 2).clone()
    return [mu, logvar]


_expect_kl = functools.partial(expect_loss, "kl_divergence")
# one row N((1, 0), diag(1, 4)): 0.5 ((1 + 1 - 1 - 0) + (4 + 0 - 1 - ln 4)) = 1.306853; a row
# N(0, I) adds 0; the mean over the two rows halves it
simple_check("kl_divergence.hand_example", SPEC.id, "kl_divergence", 0.3,
             "KL of N((1, 0), diag(1, 4)) and N(0, I) to N(0, I), summed over dimensions, averaged over rows",
             lambda: [Call("kl_divergence", [torch.tensor([[1.0, 0.0], [0.0, 0.0]]),
                                             torch.tensor([[0.0, math.log(4.0)], [0.0, 0.0]])], {})],
             _expect_kl(0.653426, "rows N((1, 0), diag(1, 4)) and N(0, I): (1.306853 + 0) / 2",
                        hints=((1.306853, "average over the rows of the batch, do not sum them"),
                               (0.326713, "sum over the dimensions, do not average them"))))
simple_check("kl_divergence.prior", SPEC.id, "kl_divergence", 0.2,
             "the KL of the prior N(0, I) to itself is 0",
             lambda: [Call("kl_divergence", [torch.zeros(3, 4), torch.zeros(3, 4)], {})],
             _expect_kl(0.0, "mu = 0, logvar = 0"))
vectorized_check(SPEC.id, "kl_divergence", 0.2,
                 lambda s: Call("kl_divergence", [unit_rows(16 * s, 8, 40), unit_rows(16 * s, 8, 41)], {},
                                instrument=True))


def _moments(outcomes, ctx):
    draws, problem = parsed(outcomes, lambda v: (v, expect_tensor(v, "reparameterize(mu, logvar)", [20_000, 2])))
    if problem:
        return False, problem
    mean, std = draws.double().mean(dim=0), draws.double().std(dim=0)
    if torch.allclose(std, torch.tensor([4.0, 0.25], dtype=torch.float64), rtol=0.05):
        return False, f"standard deviations {std.tolist()}: sigma is exp(logvar / 2), not exp(logvar)"
    if not (close(mean, [1.0, -2.0], 0.06)
            and torch.allclose(std, torch.tensor([2.0, 0.5], dtype=torch.float64), rtol=0.05)):
        return False, (f"20,000 draws of N((1, -2), diag(4, 1/4)) should have means near (1, -2) and standard "
                       f"deviations near (2, 0.5), got means {mean.tolist()} and deviations {std.tolist()}")
    return True, "20,000 draws of N((1, -2), diag(4, 1/4)): means near (1, -2), deviations near (2, 0.5)"


simple_check("reparameterize.moments", SPEC.id, "reparameterize", 0.4,
             "draws of N(mu, diag(exp(logvar))) have mean mu and standard deviation exp(logvar / 2)",
             lambda: [Call("reparameterize", _gaussian_moments(), {})], _moments)


def _shape_and_dtype(outcomes, ctx):
    draws, problem = parsed(outcomes, lambda v: (v, expect_tensor(v, "reparameterize(mu, logvar)", [5, 3])))
    if problem:
        return False, problem
    if draws.dtype != torch.float32:
        return False, f"float32 mu and logvar should give a float32 draw, got {draws.dtype}"
    if torch.equal(draws, torch.zeros(5, 3)):
        return False, "the draw is mu itself: add sigma times a standard normal eps"
    return True, "mu, logvar [5, 3] float32 give a draw [5, 3] float32"


simple_check("reparameterize.shape", SPEC.id, "reparameterize", 0.1,
             "a draw has the shape and dtype of mu",
             lambda: [Call("reparameterize", [torch.zeros(5, 3), torch.zeros(5, 3)], {})], _shape_and_dtype)
vectorized_check(SPEC.id, "reparameterize", 0.2,
                 lambda s: Call("reparameterize", [unit_rows(16 * s, 8, 42), unit_rows(16 * s, 8, 43)], {},
                                instrument=True))


def _expect_triplets(expected, what, hints=()):
    def judge(outcomes, ctx):
        got, problem = parsed(outcomes, triplets_value)
        if problem:
            return False, problem
        if got != expected:
            advice = next((f" ({text})" for value, text in hints if got == value), "")
            return False, f"{what}: expected the triplets {sorted(expected)}, got {sorted(got)}{advice}"
        return True, f"{what}: {sorted(expected)}"
    return judge


# points at 0, 15, 25, 60 degrees, labels 0, 0, 1, 1; d = 2 - 2 cos: d(0, 15) = 0.068,
# d(0, 25) = 0.187, d(15, 25) = 0.030, d(25, 60) = 0.362, d(15, 60) = 0.586, d(0, 60) = 1.
# margin 0.2: only anchor 0 (positive 1) has a negative in (0.068, 0.268): item 2.
# margin 0.5: also anchor 3 (positive 2): item 1 at 0.586 in (0.362, 0.862).
_FOUR, _FOUR_LABELS = (0, 15, 25, 60), [0, 0, 1, 1]
simple_check("semihard_triplets.hand_example", SPEC.id, "semihard_triplets", 0.5,
             "points at 0, 15, 25, 60 degrees, labels [0, 0, 1, 1], margin 0.2: the one semi-hard triplet (0, 1, 2)",
             lambda: [circle_call("semihard_triplets", _FOUR, _FOUR_LABELS, margin=0.2)],
             _expect_triplets({(0, 1, 2)}, "points at 0, 15, 25, 60 degrees, margin 0.2", hints=(
                 ({(0, 1, 2), (1, 0, 2), (2, 3, 0), (2, 3, 1)},  # every n with d(a, n) < d(a, p) + margin
                  "a semi-hard negative is farther than the positive: d(a, p) < d(a, n)"),)))
simple_check("semihard_triplets.margin", SPEC.id, "semihard_triplets", 0.3,
             "the margin bounds the negatives: margin 0.5 adds the triplet (3, 2, 1)",
             lambda: [circle_call("semihard_triplets", _FOUR, _FOUR_LABELS, margin=0.5)],
             _expect_triplets({(0, 1, 2), (3, 2, 1)}, "points at 0, 15, 25, 60 degrees, margin 0.5"))
simple_check("semihard_triplets.none", SPEC.id, "semihard_triplets", 0.2,
             "a batch of one class has no triplet: three empty tensors",
             lambda: [circle_call("semihard_triplets", _FOUR, [3, 3, 3, 3], margin=0.5)],
             _expect_triplets(set(), "four points of one label"))
vectorized_check(SPEC.id, "semihard_triplets", 0.2,
                 lambda s: Call("semihard_triplets", [unit_rows(12 * s, 8, 44), torch.arange(12 * s) % 3],
                                {"margin": 0.5}, instrument=True))

_expect_sh = functools.partial(expect_loss, "semihard_triplet_loss")
simple_check("semihard_triplet_loss.hand_example", SPEC.id, "semihard_triplet_loss", 0.3,
             "the hinge averaged over the semi-hard triplets of the 0, 15, 25, 60 degrees example",
             lambda: [circle_call("semihard_triplet_loss", _FOUR, _FOUR_LABELS, margin=0.2),
                      circle_call("semihard_triplet_loss", _FOUR, _FOUR_LABELS, margin=0.5)],
             lambda outcomes, ctx: all_judged(outcomes, ctx, [
                 _expect_sh(0.080764, "margin 0.2, triplet (0, 1, 2): d(0, 15) - d(0, 25) + 0.2"),
                 _expect_sh(0.328337, "margin 0.5: the mean over (0, 1, 2) and (3, 2, 1)",
                            hints=((0.656673, "average over the triplets, do not sum"),))]))
simple_check("semihard_triplet_loss.none", SPEC.id, "semihard_triplet_loss", 0.2,
             "without a semi-hard triplet the loss is 0 (not NaN)",
             lambda: [circle_call("semihard_triplet_loss", _FOUR, [3, 3, 3, 3], margin=0.5)],
             _expect_sh(0.0, "four points of one label", hints=()))
vectorized_check(SPEC.id, "semihard_triplet_loss", 0.2,
                 lambda s: Call("semihard_triplet_loss", [unit_rows(12 * s, 8, 45), torch.arange(12 * s) % 3],
                                {"margin": 0.5}, instrument=True))

# dvml_loss on _dvml_example with lambdas (1, 2, 3, 4): KL 1.306853 / 4, MSE 1.25 / 12, the
# synthesized triplets' mean hinge 0.113508, the invariant one's 0.080764 (margin 0.2)
_DVML_EXPECTED = {"kl": 0.326713, "reconstruction": 0.104167, "triplet_synthesized": 0.113508,
                  "triplet_invariant": 0.080764}


def _dvml_terms(keys, what):
    def judge(outcomes, ctx):
        got, problem = parsed(outcomes, dvml_value)
        if problem:
            return False, problem
        off = {k: round(got[1][k], 6) for k in keys if abs(got[1][k] - _DVML_EXPECTED[k]) > 1e-4}
        if off:
            return False, f"{what}: expected {({k: _DVML_EXPECTED[k] for k in keys})}, got {off} for {sorted(off)}"
        return True, f"{what}: " + ", ".join(f"{k} {_DVML_EXPECTED[k]:.4f}" for k in keys)
    return judge


def _dvml_call():
    return Call("dvml_loss", _dvml_example(), {"lambdas": (1.0, 2.0, 3.0, 4.0), "margin": 0.2}, key="dvml.example")


simple_check("dvml_loss.kl_and_reconstruction", SPEC.id, "dvml_loss", 0.3,
             "the terms kl (KL to N(0, I)) and reconstruction (mean squared error over all entries)",
             lambda: [_dvml_call()],
             _dvml_terms(("kl", "reconstruction"), "the worked example (see the check's description)"))
simple_check("dvml_loss.triplet_terms", SPEC.id, "dvml_loss", 0.3,
             "triplet_synthesized on z_inv + z_var, triplet_invariant on z_inv, both semi-hard",
             lambda: [_dvml_call()],
             _dvml_terms(("triplet_synthesized", "triplet_invariant"), "z_inv at 0, 15, 25, 60 degrees, z_inv + z_var "
                                                                       "at 0, 20, 25, 60"))


def _dvml_total(outcomes, ctx):
    got, problem = parsed(outcomes, dvml_value)
    if problem:
        return False, problem
    total, terms = got
    weighted = sum(w * terms[k] for w, k in zip((1.0, 2.0, 3.0, 4.0), DVML_TERMS))
    if abs(total - weighted) > 1e-5:
        return False, f"with lambdas (1, 2, 3, 4) the total should be the weighted sum of the terms {weighted:.5f}, got {total:.5f}"
    return True, f"total = 1 kl + 2 reconstruction + 3 triplet_synthesized + 4 triplet_invariant = {weighted:.4f}"


simple_check("dvml_loss.total", SPEC.id, "dvml_loss", 0.3,
             "the total is lambda1 L1 + lambda2 L2 + lambda3 L3 + lambda4 L4 of its terms",
             lambda: [_dvml_call()], _dvml_total)
vectorized_check(SPEC.id, "dvml_loss", 0.2,
                 lambda s: Call("dvml_loss", [unit_rows(12 * s, 16, 46), unit_rows(12 * s, 4, 47),
                                              unit_rows(12 * s, 4, 48), unit_rows(12 * s, 4, 49),
                                              unit_rows(12 * s, 4, 50), unit_rows(12 * s, 16, 51),
                                              torch.arange(12 * s) % 3], {}, instrument=True))
