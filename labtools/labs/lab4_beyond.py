"""Lab 4: classification losses, unseen classes, Recall@K, NMI and F1, similarity maps.

Its public checks follow the spec; :func:`recall_value` and :func:`maps_value` read a Recall@K
result and a pair of similarity maps for the grader too.
"""

import functools
import math

import torch

from labtools.checks.builders import (circle_call, points_on_circle, simple_check, static_loop_check,
                                     synthetic_images, unit_rows, vectorized_check)
from labtools.checks.registry import Call
from labtools.judges import all_judged, describe_tensor, expect_loss, expect_tensor, failed, float_value, parsed
from labtools.labs import LabSpec, Report, Solution

__all__ = ["SPEC", "recall_value", "maps_value", "pair_images"]

SPEC = LabSpec(
    id="lab4_beyond",
    title="Lab 4: Beyond the triplet loss: classification losses, unseen classes, clustering metrics",
    solutions=(Solution("distances", reference="lab1_retrieval", extracted=True), Solution("recall_at_k", 1.5),
               Solution("kmeans", extracted=True), Solution("contingency_table", extracted=True),
               Solution("nmi", 1.5), Solution("f1", 1.5), Solution("NormSoftmax", 1.0),
               Solution("norm_softmax_loss", 1.0), Solution("arcface_loss", 1.0), Solution("similarity_maps", 1.0)),
    reports=(Report("report_losses", 0.5), Report("report_unseen", 0.5), Report("report_inside", 0.5)),
)


# ----------------------------------------------------------------------------------------------
# recall_at_k, nmi, f1, norm_softmax_loss, arcface_loss


def recall_value(value, ks):
    """``({K: float}, None)`` for a Recall@K result with exactly the keys ``ks``, else ``(None, message)``."""
    if not isinstance(value, dict):
        return None, f"recall_at_k should return a dict {{K: recall}}, got {describe_tensor(value)}"
    keys = sorted(int(k) for k in value if isinstance(k, int) or (isinstance(k, torch.Tensor) and k.numel() == 1))
    if keys != sorted(ks):
        return None, f"recall_at_k should return one value per K in {list(ks)}, got keys {sorted(map(str, value))}"
    out = {}
    for k, v in value.items():
        number, problem = float_value(v, f"Recall@{int(k)}")
        if problem:
            return None, problem
        out[int(k)] = number
    return out, None


def _two_blobs(jitter_seed: int = 0) -> torch.Tensor:
    """8 unit rows ``[8, 2]``: four near e1, then four near e2 (k-means finds them whatever its seed)."""
    g = torch.Generator().manual_seed(jitter_seed)
    centers = torch.eye(2, dtype=torch.float64).repeat_interleave(4, dim=0)
    return torch.nn.functional.normalize(centers + 1e-3 * torch.randn(8, 2, generator=g, dtype=torch.float64), dim=1)


def _expect_recall(expected, what, hint=None):
    def judge(outcomes, ctx):
        got, problem = parsed(outcomes, recall_value, list(expected))
        if problem:
            return False, problem
        if any(abs(got[k] - v) > 1e-6 for k, v in expected.items()):
            advice = f" ({hint[1]})" if hint and all(abs(got[k] - v) < 1e-6 for k, v in hint[0].items()) else ""
            return False, f"{what}: expected {expected}, got {got}{advice}"
        return True, f"{what}: {expected}"
    return judge


# four points at 0, 10, 20, 180 degrees, labels 0, 0, 1, 1: the nearest positive of each is
# 1st, 1st (tied with a negative: ties do not count against it), 3rd and 1st
simple_check("recall_at_k.hand_example", SPEC.id, "recall_at_k", 0.3,
             "hand-worked example: points at 0, 10, 20, 180 degrees, labels [0, 0, 1, 1], K = 1, 2, 3",
             lambda: [circle_call("recall_at_k", (0, 10, 20, 180), [0, 0, 1, 1], ks=(1, 2, 3))],
             _expect_recall({1: 0.75, 2: 0.75, 3: 1.0}, "points at 0, 10, 20, 180 degrees, labels [0, 0, 1, 1]"))
# labels 0, 1, 0, 1 at 0, 10, 90, 100 degrees: every nearest other item is a negative
simple_check("recall_at_k.leave_one_out", SPEC.id, "recall_at_k", 0.3,
             "an item is not its own neighbour: Recall@1 is 0 when every nearest other item is a negative",
             lambda: [circle_call("recall_at_k", (0, 10, 90, 100), [0, 1, 0, 1], ks=(1, 2, 3))],
             _expect_recall({1: 0.0, 2: 0.5, 3: 1.0}, "points at 0, 10, 90, 100 degrees, labels [0, 1, 0, 1]",
                            hint=({1: 1.0}, "each query seems to find itself: leave it out of its own neighbours")))
# the same with a fifth item of a label of its own, far from the others: it cannot be hit
simple_check("recall_at_k.singletons", SPEC.id, "recall_at_k", 0.2,
             "queries whose label no other item has are left out",
             lambda: [circle_call("recall_at_k", (0, 10, 90, 100, 225), [0, 1, 0, 1, 2], ks=(1, 2, 3))],
             _expect_recall({1: 0.0, 2: 0.5, 3: 1.0}, "the same plus a point at 225 degrees with label 2",
                            hint=({3: 0.8}, "the item without a positive should not count as a query")))
vectorized_check(SPEC.id, "recall_at_k", 0.2,
                 lambda s: Call("recall_at_k", [unit_rows(24 * s, 8, 5), torch.arange(24 * s) % 4], {"ks": (1, 2, 4)},
                                instrument=True))


# two tight groups of four (near e1 and near e2) against labels; k-means with 2 clusters finds
# the groups: NMI and pairwise F1 follow from the 2 x 2 table of counts
def _clustering_checks(function, points, values):
    """The checks of ``function`` (nmi or f1) on the two groups: clusters equal to the classes,
    each holding two of each class, a hand-worked table (``points`` and expected ``values`` in
    this order), then its loop check."""

    def expect_score(expected, what):
        def judge(outcomes, ctx):
            got, problem = parsed(outcomes, float_value, function)
            if problem:
                return False, problem
            if abs(got - expected) > 1e-4:
                return False, f"{what}: expected {expected:.4f}, got {got:.4f} (tolerance 1e-4)"
            return True, f"{what}: {expected:.4f}"
        return judge

    for name, labels, pts, value, what in (
        ("perfect", [0, 0, 0, 0, 1, 1, 1, 1], points[0], values[0], "clusters equal to the classes"),
        ("mixed", [0, 0, 1, 1, 0, 0, 1, 1], points[1], values[1], "each cluster holds two of each class"),
        ("hand_example", [0, 0, 0, 1, 1, 1, 1, 0], points[2], values[2],
         "clusters holding labels [0, 0, 0, 1] and [1, 1, 1, 0]"),
    ):
        simple_check(f"{function}.{name}", SPEC.id, function, pts,
                     f"{function} of two tight groups of four points: {what}",
                     lambda labels=labels: [Call(function, [_two_blobs(), torch.tensor(labels)], {})],
                     expect_score(value, f"two tight groups of four, {what}"))
    static_loop_check(SPEC.id, function, 0.2, "kmeans")


_clustering_checks("nmi", (0.3, 0.3, 0.2), (1.0, 0.0, 0.188722))
_clustering_checks("f1", (0.3, 0.3, 0.2), (1.0, 1 / 3, 0.5))

# one feature at 30 degrees, class 0; the class weights e1 and e2: cosines 0.866 and 0.5
_E2 = torch.eye(2, dtype=torch.float64)
_F30, _Y0 = points_on_circle(30), torch.tensor([0])


def _softmax_loss(margin_logit_gap):
    return math.log(1 + math.exp(-margin_logit_gap))


_expect_ns = functools.partial(expect_loss, "norm_softmax_loss")
simple_check("norm_softmax_loss.hand_example", SPEC.id, "norm_softmax_loss", 0.3,
             "one feature at 30 degrees of class 0, weights e1 and e2: cross-entropy of the cosines over the "
             "temperature",
             lambda: [Call("norm_softmax_loss", [_F30, _Y0, _E2], {"temperature": 1.0}),
                      Call("norm_softmax_loss", [_F30, _Y0, _E2], {"temperature": 0.5})],
             lambda outcomes, ctx: all_judged(outcomes, ctx, [
                 _expect_ns(_softmax_loss(0.366025), "temperature 1: log(1 + exp(-(cos 30 - cos 60) / 1))"),
                 _expect_ns(_softmax_loss(0.732051), "temperature 0.5: log(1 + exp(-(cos 30 - cos 60) / 0.5))")]))
simple_check("norm_softmax_loss.normalizes", SPEC.id, "norm_softmax_loss", 0.2,
             "features and weights are L2-normalized inside: scaling them changes nothing",
             lambda: [Call("norm_softmax_loss", [3 * _F30, _Y0, 2 * _E2], {"temperature": 1.0})],
             _expect_ns(_softmax_loss(0.366025), "feature x 3 and weights x 2, temperature 1"))
vectorized_check(SPEC.id, "norm_softmax_loss", 0.2,
                 lambda s: Call("norm_softmax_loss", [unit_rows(32 * s, 8, 6), torch.arange(32 * s) % 5,
                                                      unit_rows(5, 8, 7)], {}, instrument=True))

_expect_arc = functools.partial(expect_loss, "arcface_loss")
simple_check("arcface_loss.hand_example", SPEC.id, "arcface_loss", 0.3,
             "one feature at 30 degrees of class 0, weights e1 and e2: the margin is added to the true angle",
             lambda: [Call("arcface_loss", [_F30, _Y0, _E2], {"margin": 0.5, "scale": 64.0}),
                      Call("arcface_loss", [_F30, _Y0, _E2], {"margin": 0.2, "scale": 10.0})],
             lambda outcomes, ctx: all_judged(outcomes, ctx, [
                 _expect_arc(_softmax_loss(64 * (math.cos(math.radians(30) + 0.5) - 0.5)),
                             "margin 0.5, scale 64: log(1 + exp(-64 (cos(30 deg + 0.5) - cos 60)))"),
                 _expect_arc(_softmax_loss(10 * (math.cos(math.radians(30) + 0.2) - 0.5)),
                             "margin 0.2, scale 10: log(1 + exp(-10 (cos(30 deg + 0.2) - cos 60)))")]))
simple_check("arcface_loss.no_margin", SPEC.id, "arcface_loss", 0.2,
             "with margin 0 it is the normalized softmax loss at temperature 1 / scale",
             lambda: [Call("arcface_loss", [_F30, _Y0, _E2], {"margin": 0.0, "scale": 2.0})],
             _expect_arc(_softmax_loss(0.732051), "margin 0, scale 2: log(1 + exp(-2 (cos 30 - cos 60)))"))
vectorized_check(SPEC.id, "arcface_loss", 0.2,
                 lambda s: Call("arcface_loss", [unit_rows(32 * s, 8, 8), torch.arange(32 * s) % 5,
                                                 unit_rows(5, 8, 9)], {}, instrument=True))


# ----------------------------------------------------------------------------------------------
# the NormSoftmax head (a class: the checks build it, then call it or read an attribute)


def _head_call(*then, args=(16, 5), **kwargs) -> Call:
    return Call("NormSoftmax", list(args), kwargs, then=list(then))


_X = unit_rows(8, 16, 10) * 3 + 1  # [8, 16]: rows of any scale and offset


def _head_judge(dim: int, made: str):
    """Judge of ``made(x)`` for x [8, 16] ([8, dim] unit rows) and ``made.weight`` ([5, dim]), then,
    with a third call, ``made.temperature`` (0.05 by default)."""
    def judge(outcomes, ctx):
        failure = failed(outcomes)
        if failure:
            return False, failure
        embedding, weight = outcomes[0].value, outcomes[1].value
        problem = (expect_tensor(embedding, f"{made}(x) for x [8, 16]", [8, dim])
                   or expect_tensor(weight, f"{made}.weight", [5, dim]))
        if problem:
            return False, problem
        if not torch.allclose(embedding.norm(dim=1), torch.ones(8), atol=1e-5):
            return False, "the embedding rows should be L2-normalized (norm 1)"
        if len(outcomes) > 2:
            temperature, problem = float_value(outcomes[2].value, f"{made}.temperature")
            if problem or abs(temperature - 0.05) > 1e-12:
                return False, problem or f"the default temperature should be 0.05, got {temperature}"
        temperature = ", temperature 0.05" if len(outcomes) > 2 else ""
        return True, f"{made}: unit embeddings [8, {dim}], class weights [5, {dim}]{temperature}"
    return judge


simple_check("NormSoftmax.shapes", SPEC.id, "NormSoftmax", 0.3,
             "NormSoftmax(16, 5): unit embeddings [B, 16], a weight [5, 16] per class, temperature 0.05",
             lambda: [_head_call({"call": [_X]}), _head_call({"attr": "weight"}), _head_call({"attr": "temperature"})],
             _head_judge(16, "NormSoftmax(16, 5)"))


def _head_layer_norm(outcomes, ctx):
    embedding, problem = parsed(outcomes, lambda v: (v, expect_tensor(v, "NormSoftmax(4, 3)(x)", [2, 4])))
    if problem:
        return False, problem
    expected = torch.tensor([[-0.6708, -0.2236, 0.2236, 0.6708]] * 2)
    if not torch.allclose(embedding.float(), expected, atol=1e-4):
        return False, (f"rows [1, 2, 3, 4] and [10, 20, 30, 40] should give {expected[0].tolist()} (layer "
                       f"normalization without learned parameters, then L2), got {embedding.tolist()}")
    return True, "layer normalization, then L2: [1, 2, 3, 4] and its 10 times give [-0.67, -0.22, 0.22, 0.67]"


simple_check("NormSoftmax.layer_norm", SPEC.id, "NormSoftmax", 0.3,
             "the embedding is the layer-normalized input (no learned scale or shift), L2-normalized",
             lambda: [_head_call({"call": [torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]])]},
                                 args=(4, 3))],
             _head_layer_norm)

simple_check("NormSoftmax.projection", SPEC.id, "NormSoftmax", 0.2,
             "with embedding_dim, a linear projection to that size before the L2 normalization",
             lambda: [_head_call({"call": [_X]}, embedding_dim=4), _head_call({"attr": "weight"}, embedding_dim=4)],
             _head_judge(4, "NormSoftmax(16, 5, embedding_dim=4)"))


# ----------------------------------------------------------------------------------------------
# similarity_maps (of a seeded ConvNet: the checks build it in the worker, {"__spec__": "convnet"})


def pair_images(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` seeded pairs of toy images: ``(query [count, 1, 28, 28], retrieved [count, 1, 28, 28])``."""
    images, _ = synthetic_images(count, 2, seed)  # [2 count, 1, 28, 28]
    return images[:count], images[count:]


def maps_value(value, count: int, size=(28, 28)):
    """``((query_maps, retrieved_maps), None)`` for a pair of float maps ``[count, *size]``, finite and
    non-negative, else ``(None, message)``."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return None, f"similarity_maps should return a pair (query_maps, retrieved_maps), got {describe_tensor(value)}"
    for side, maps in zip(("query_maps", "retrieved_maps"), value):
        problem = expect_tensor(maps, side, [count, *size])
        if problem:
            return None, problem
        if not maps.is_floating_point() or not torch.isfinite(maps).all():
            return None, f"{side} should hold finite floats, got {maps.dtype} with NaN or infinite values"
        if (maps < 0).any():
            return None, f"{side} has negative values: Grad-CAM's weighting ends with a ReLU"
    return (value[0].float(), value[1].float()), None


def _maps_call(count=3, seed=0, *, net_seed=0, swap=False, same=False) -> Call:
    query, retrieved = pair_images(count, seed)
    if same:
        retrieved = query
    if swap:
        query, retrieved = retrieved, query
    return Call("similarity_maps", [{"__spec__": "convnet", "seed": net_seed}, query, retrieved])


def _maps_shapes(outcomes, ctx):
    got, problem = parsed(outcomes, maps_value, 3)
    if problem:
        return False, problem
    if not all(maps.sum() > 0 for maps in got):
        return False, "the maps of three pairs are all zero: weight the maps by the gradient of the similarity"
    return True, "three pairs give two maps [3, 28, 28] each, non-negative and not all zero"


simple_check("similarity_maps.shapes", SPEC.id, "similarity_maps", 0.2,
             "similarity_maps(net, query, retrieved) of three pairs: two maps [3, 28, 28], non-negative",
             lambda: [_maps_call()], _maps_shapes)


def _maps_symmetry(outcomes, ctx):
    failure = failed(outcomes)
    if failure:
        return False, failure
    (forth, problem), (back, problem_back), (same, problem_same) = (maps_value(o.value, 3) for o in outcomes)
    if problem or problem_back or problem_same:
        return False, problem or problem_back or problem_same
    if not (torch.allclose(forth[0], back[1], atol=1e-5) and torch.allclose(forth[1], back[0], atol=1e-5)):
        return False, ("swapping query and retrieved should swap the two maps: each side's map should come from "
                       "its own image's maps and their gradient")
    if not torch.allclose(same[0], same[1], atol=1e-5):
        return False, "a pair of one image twice should give two equal maps"
    return True, "swapping the pair swaps the maps; a pair of one image twice gives two equal maps"


simple_check("similarity_maps.symmetry", SPEC.id, "similarity_maps", 0.2,
             "the similarity is symmetric: swapping query and retrieved swaps the maps",
             lambda: [_maps_call(), _maps_call(swap=True), _maps_call(same=True)], _maps_symmetry)
vectorized_check(SPEC.id, "similarity_maps", 0.2, lambda s: Call(
    "similarity_maps", [{"__spec__": "convnet", "seed": 0}, *pair_images(4 * s, 1)], {}, instrument=True))
