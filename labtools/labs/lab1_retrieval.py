"""Lab 1: image retrieval with a ConvNet's normalized features, loop-free distances, AP and mAP.

Its public checks follow the spec; :func:`ap_result`, :func:`map_result` and :func:`tiny_map_call`
serve the grader's hidden checks too.
"""

import math

import torch

from labtools.checks.builders import simple_check, synthetic_images, unit_rows, vectorized_check
from labtools.checks.registry import Call
from labtools.judges import close, describe_tensor, expect_tensor, failed, parsed
from labtools.labs import LabSpec, Report, Solution

__all__ = ["SPEC", "ap_result", "map_result", "tiny_map_call"]

SPEC = LabSpec(
    id="lab1_retrieval",
    title="Lab 1: Image retrieval and mean average precision",
    solutions=(Solution("distances", 1.5), Solution("evaluate_AP", 1.5), Solution("evaluate_mAP", 1.0)),
    reports=(Report("report_distances", 0.5), Report("report_retrieval", 0.5), Report("report_pr_map", 0.5)),
)


# ----------------------------------------------------------------------------------------------
# distances


# e1 and e2 of R^3: the query [e1, e2] and the items [e1, -e1, e2, -e2]
_E = torch.eye(3)


def _dist_shape(outcomes, ctx):
    failure = failed(outcomes)
    if failure:
        return False, failure
    problem = expect_tensor(outcomes[0].value, "distances(query [3, 8], items [5, 8])", [3, 5])
    return (False, problem) if problem else (True, "returns a float tensor of shape [Q, N]")


simple_check("distances.shape_dtype", SPEC.id, "distances", 0.2, "output is a float tensor of shape [Q, N]",
             lambda: [Call("distances", [unit_rows(3, 8, 1), unit_rows(5, 8, 2)])], _dist_shape)


def _dist_values(outcomes, ctx):
    failure = failed(outcomes)
    if failure:
        return False, failure
    value = outcomes[0].value
    problem = expect_tensor(value, "distances(query, items)", [2, 4])
    if problem:
        return False, problem
    expected = [[0.0, 4.0, 2.0, 2.0], [2.0, 2.0, 0.0, 4.0]]
    if not close(value, expected, 1e-5):
        return False, (f"query [e1, e2] against items [e1, -e1, e2, -e2] should give {expected} (squared "
                       f"distances: identical 0, opposite 4, orthogonal 2; tolerance 1e-5), got "
                       f"{[[round(float(x), 4) for x in row] for row in value]}")
    return True, "identical unit vectors are at distance 0, opposite ones at 4, orthogonal ones at 2"


simple_check("distances.identical_opposite", SPEC.id, "distances", 0.2,
             "squared distance 0 for identical, 4 for opposite and 2 for orthogonal unit vectors",
             lambda: [Call("distances", [torch.stack([_E[0], _E[1]]), torch.stack([_E[0], -_E[0], _E[1], -_E[1]])])],
             _dist_values)


def _dist_symmetric(outcomes, ctx):
    failure = failed(outcomes)
    if failure:
        return False, failure
    value = outcomes[0].value
    problem = expect_tensor(value, "distances(x [6, 8], x)", [6, 6])
    if problem:
        return False, problem
    if not close(value, value.T, 1e-5):
        return False, "distances(x, x) should be symmetric (tolerance 1e-5)"
    if not close(torch.diagonal(value), torch.zeros(6), 1e-5):
        return False, "distances(x, x) should have a zero diagonal (tolerance 1e-5)"
    return True, "distances(x, x) is symmetric with a zero diagonal"


simple_check("distances.symmetric", SPEC.id, "distances", 0.1, "distances(x, x) is symmetric with zero diagonal",
             lambda: [Call("distances", [unit_rows(6, 8, 3), unit_rows(6, 8, 3)])], _dist_symmetric)

vectorized_check(SPEC.id, "distances", 0.2,
                 lambda s: Call("distances", [unit_rows(4 * s, 8, 4), unit_rows(16 * s, 8, 5)], instrument=True))


# ----------------------------------------------------------------------------------------------
# evaluate_AP


def ap_result(value, n: int, name: str):
    """``((ap, precision, recall), None)`` for evaluate_AP's result: ``ap`` a finite number or
    one-element tensor (returned as a 0-d tensor), ``precision`` and ``recall`` float ``[n]``
    tensors; else ``(None, message)``."""
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        return None, f"{name} should return (ap, precision, recall), got {describe_tensor(value)}"
    ap, precision, recall = value
    if isinstance(ap, (int, float)) and not isinstance(ap, bool):
        ap = torch.tensor(float(ap))
    if not isinstance(ap, torch.Tensor) or ap.numel() != 1:
        return None, f"ap should be a number or a 0-d tensor, got {describe_tensor(ap)}"
    for part, label in ((precision, "precision"), (recall, "recall")):
        problem = expect_tensor(part, label, [n])
        if problem:
            return None, problem
    if not torch.isfinite(ap).all():
        return None, "ap is NaN or infinite"
    return (ap.reshape(()), precision, recall), None


def _ap_perfect(outcomes, ctx):
    parts, problem = parsed(outcomes, ap_result, 5, "evaluate_AP")
    if problem:
        return False, problem
    ap, precision, recall = parts
    if abs(float(ap) - 1.0) > 1e-6:
        return False, f"a perfect ranking (both relevant items first) should have AP 1, got {float(ap):.4f}"
    if not close(recall, [0.5, 1, 1, 1, 1], 1e-6) or not close(precision, [1, 1, 2 / 3, 0.5, 0.4], 1e-6):
        return False, ("a perfect ranking with 2 relevant items among 5 should give precision "
                       "[1, 1, 2/3, 1/2, 2/5] and recall [1/2, 1, 1, 1, 1] (tolerance 1e-6)")
    return True, "a perfect ranking has AP 1 and the expected precision and recall"


simple_check("evaluate_AP.perfect_ranking", SPEC.id, "evaluate_AP", 0.2, "AP of a perfect ranking is 1",
             lambda: [Call("evaluate_AP", [torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]), torch.tensor([1, 1, 0, 0, 0]),
                                           1])],
             _ap_perfect)


def _ap_hand(outcomes, ctx):
    parts, problem = parsed(outcomes, ap_result, 5, "evaluate_AP")
    if problem:
        return False, problem
    ap, precision, recall = parts
    if abs(float(ap) - 43 / 90) > 1e-5:
        return False, (f"dist [0.5, 0.1, 0.4, 0.2, 0.3], labels [1, 0, 1, 0, 1], query label 1: the ranking is "
                       f"[0, 0, 1, 1, 1] by relevance, AP = (1/3 + 2/4 + 3/5) / 3 = 0.4778; got {float(ap):.4f} "
                       "(tolerance 1e-5)")
    if not close(precision, [0, 0, 1 / 3, 0.5, 0.6], 1e-5) or not close(recall, [0, 0, 1 / 3, 2 / 3, 1], 1e-5):
        return False, ("the hand-worked example should give precision [0, 0, 1/3, 1/2, 3/5] and recall "
                       "[0, 0, 1/3, 2/3, 1] (tolerance 1e-5)")
    return True, "the hand-worked 5-item example gives AP 43/90 = 0.4778"


simple_check("evaluate_AP.hand_example", SPEC.id, "evaluate_AP", 0.2, "AP of a hand-worked 5-item example",
             lambda: [Call("evaluate_AP", [torch.tensor([0.5, 0.1, 0.4, 0.2, 0.3]), torch.tensor([1, 0, 1, 0, 1]),
                                           torch.tensor(1)])], _ap_hand)


def _ap_range(outcomes, ctx):
    parts, problem = parsed(outcomes, ap_result, 20, "evaluate_AP")
    if problem:
        return False, problem
    ap, precision, recall = parts
    if not 0.0 <= float(ap) <= 1.0:
        return False, f"AP must lie in [0, 1], got {float(ap):.4f}"
    if abs(float(recall[-1]) - 1.0) > 1e-6:
        return False, f"recall at the end of the full ranking must be 1, got {float(recall[-1]):.4f}"
    if (precision < -1e-9).any() or (precision > 1 + 1e-9).any():
        return False, "precision values must lie in [0, 1]"
    return True, "AP in [0, 1], precision and recall of length N, recall ends at 1"


def _ap_range_call():
    g = torch.Generator().manual_seed(6)
    return [Call("evaluate_AP", [torch.rand(20, generator=g), torch.randint(0, 3, (20,), generator=g), 2])]


simple_check("evaluate_AP.range", SPEC.id, "evaluate_AP", 0.1, "AP lies in [0, 1] and recall ends at 1",
             _ap_range_call, _ap_range)


def _ap_vec_call(s):
    g = torch.Generator().manual_seed(7)
    n = 16 * s
    return Call("evaluate_AP", [torch.rand(n, generator=g), torch.randint(0, 3, (n,), generator=g), 1],
                instrument=True)


vectorized_check(SPEC.id, "evaluate_AP", 0.2, _ap_vec_call)


# ----------------------------------------------------------------------------------------------
# evaluate_mAP


def map_result(value, n: int):
    """``((mAP, precision, recall), None)`` for evaluate_mAP's result on ``n`` images: ``mAP`` a
    finite float (or one-element tensor, returned as a float), ``precision`` and ``recall`` float
    ``[n - 1]`` tensors; else ``(None, message)``."""
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        return None, f"evaluate_mAP should return (mAP, precision, recall), got {describe_tensor(value)}"
    m, precision, recall = value
    if isinstance(m, torch.Tensor) and m.numel() == 1:
        m = float(m)
    if not isinstance(m, (int, float)) or isinstance(m, bool):
        return None, f"mAP should be a float, got {describe_tensor(m)}"
    if not math.isfinite(m):
        return None, "mAP is NaN or infinite"
    for part, label in ((precision, "precision"), (recall, "recall")):
        problem = expect_tensor(part, label, [n - 1])
        if problem:
            return None, problem + f" (each query is ranked against the N - 1 = {n - 1} other images)"
    return (float(m), precision, recall), None


def tiny_map_call(n_per_class=10, classes=3, queries=5, seed=8, key=None):
    """A call of evaluate_mAP on a seeded ConvNet and ``n_per_class * classes`` toy images
    (:func:`~labtools.checks.builders.synthetic_images`), ``num_queries=queries``."""
    images, labels = synthetic_images(n_per_class, classes, seed)
    return Call("evaluate_mAP", [{"__spec__": "convnet", "seed": seed},
                                 {"__spec__": "dataset", "images": images, "labels": labels}],
                {"num_queries": queries}, key=key)


def _map_shapes(outcomes, ctx):
    parts, problem = parsed(outcomes, map_result, 30)
    if problem:
        return False, problem
    m, precision, recall = parts
    if not 0.0 <= m <= 1.0:
        return False, f"mAP must lie in [0, 1], got {m:.4f}"
    if abs(float(recall[-1]) - 1.0) > 1e-6:
        return False, f"the mean recall must end at 1, got {float(recall[-1]):.4f}"
    return True, "returns (float, [N-1], [N-1]) with the recall ending at 1"


simple_check("evaluate_mAP.shapes", SPEC.id, "evaluate_mAP", 0.2,
             "evaluate_mAP of a tiny net returns (float, [N-1], [N-1]), recall ending at 1",
             lambda: [tiny_map_call()], _map_shapes)
