"""Lab 3: cross-entropy, triplet and Smooth-AP on Fashion-MNIST.

Its public checks follow the spec, with the memory measurement of ``smooth_ap_loss``
(:func:`smooth_ap_memory_call`, :func:`memory_used`).
"""

import functools
import math

import torch

from labtools.checks.builders import points_on_circle, simple_check, unit_rows, vectorized_check
from labtools.checks.registry import Call, Check, register
from labtools.judges import all_judged, expect_loss, failed, loss_value, parsed
from labtools.labs import LabSpec, Report, Solution

__all__ = ["SPEC", "smooth_ap_batch", "MEMORY_BATCHES", "MEMORY_PER_CLASS", "MEMORY_BOUND_UNITS", "MEMORY_GROWTH_LIMIT",
           "smooth_ap_memory_call", "memory_used"]

SPEC = LabSpec(
    id="lab3_smoothap",
    title="Lab 3: Cross-entropy, triplet and Smooth-AP on Fashion-MNIST",
    solutions=(Solution("distances", reference="lab1_retrieval", extracted=True),
               Solution("evaluate_AP", reference="lab1_retrieval", extracted=True),
               Solution("evaluate_mAP", reference="lab1_retrieval", extracted=True),
               Solution("triplet_loss", reference="lab2_triplet", extracted=True),
               Solution("smooth_ap_loss", 3.0), Solution("train")),
    reports=(Report("report_settings", 0.5), Report("report_validation", 0.5), Report("report_comparison", 0.5),
             Report("report_retrieval", 0.5)),
)


# ----------------------------------------------------------------------------------------------
# smooth_ap_loss


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def smooth_ap_batch(classes: int, per_class: int, d: int = 8, seed: int = 3, instrument: bool = False) -> Call:
    """A call of ``smooth_ap_loss`` on ``classes x per_class`` random unit rows (tau 0.1)."""
    labels = torch.arange(classes).repeat_interleave(per_class)
    return Call("smooth_ap_loss", [unit_rows(len(labels), d, seed), labels], {"tau": 0.1}, instrument=instrument)


#: The memory check of smooth_ap_loss: batches of m = MEMORY_PER_CLASS images per class; at the
#: larger the call and its backward pass must stay within MEMORY_BOUND_UNITS [B, m, B] float32
#: tensors (12.6 MB at B = 256; a [B, B, B] tensor is 16.8 MB in bool, 67 MB in float32; the peaks
#: the reference and the typical mistakes reach are measured by tests/labs/test_lab3_smoothap.py), and grow less than MEMORY_GROWTH_LIMIT from the
#: smaller (B^2 m: 4x; B^3: 8x).
MEMORY_BATCHES, MEMORY_PER_CLASS, MEMORY_BOUND_UNITS, MEMORY_GROWTH_LIMIT = (128, 256), 4, 12, 2 ** 2.5


def smooth_ap_memory_call(batch: int) -> Call:
    """``smooth_ap_loss`` on ``batch`` random unit rows that require a gradient, measured with its backward."""
    labels = torch.arange(batch // MEMORY_PER_CLASS).repeat_interleave(MEMORY_PER_CLASS)
    return Call("smooth_ap_loss", [{"__spec__": "leaf", "tensor": unit_rows(batch, 8, 3)}, labels], {"tau": 0.1},
                memory=True, backward=True)


def memory_used(counts: dict) -> tuple[int, str] | None:
    """``(bytes, how)`` of a measured call: the peak of its allocations (torch's and Python's), or
    the span of the largest tensor an operation worked on when larger (``how``: ``"allocated"`` or
    ``"operand"``); ``None`` when the counts lack the measurement."""
    if not all(isinstance(counts.get(k), (int, float)) for k in ("peak_bytes", "largest_operand_bytes")):
        return None
    allocated = int(counts["peak_bytes"]) + int(counts.get("python_peak_bytes", 0))
    operand = int(counts["largest_operand_bytes"])
    return (allocated, "allocated") if allocated >= operand else (operand, "operand")


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


_expect_ap_loss = functools.partial(expect_loss, "smooth_ap_loss")

# Three points at 0, 120 and 60 degrees, labels [0, 0, 1]: the queries 0 and 1 each have one
# positive (the other, similarity -0.5) and one negative (item 2, similarity 0.5 to both), so
# D = 0.5 - (-0.5) = 1 and AP = 1 / (1 + G(1)) = 1 / (1 + sigmoid(1 / tau)); item 2 has no positive.
_TRIO = (points_on_circle(0, 120, 60), torch.tensor([0, 0, 1]))


def _trio_loss(tau):
    return 1 - 1 / (1 + _sigmoid(1 / tau))


simple_check("smooth_ap_loss.hand_example", SPEC.id, "smooth_ap_loss", 0.3,
             "hand-worked example: points at 0, 120, 60 degrees, labels [0, 0, 1], tau 0.1",
             lambda: [Call("smooth_ap_loss", list(_TRIO), {"tau": 0.1})],
             _expect_ap_loss(_trio_loss(0.1), "points at 0, 120, 60 degrees, labels [0, 0, 1], tau 0.1: "
                             "1 - 1 / (1 + sigmoid(1 / 0.1))",
                             hints=[(_trio_loss(1.0), "tau seems ignored: divide D by tau inside the sigmoid"),
                                    (1 - 1 / (1 + _sigmoid(-10)), "check the sign of D_ij = s_j - s_i")]))

simple_check("smooth_ap_loss.tau", SPEC.id, "smooth_ap_loss", 0.2,
             "the temperature tau is used: the same example with tau 0.5 and 1",
             lambda: [Call("smooth_ap_loss", list(_TRIO), {"tau": 0.5}),
                      Call("smooth_ap_loss", list(_TRIO), {"tau": 1.0})],
             lambda outcomes, ctx: all_judged(outcomes, ctx, [
                 _expect_ap_loss(_trio_loss(0.5), "tau 0.5: 1 - 1 / (1 + sigmoid(2))"),
                 _expect_ap_loss(_trio_loss(1.0), "tau 1: 1 - 1 / (1 + sigmoid(1))")]))

# e1 and e2 (label 0) and their bisector (label 1): for query e1 the negative (similarity 0.71)
# ranks above the positive e2 (similarity 0): loss 1 - 1 / (1 + sigmoid(0.71 / 0.1)) = 0.4998.
# Counting each query as its own positive (similarity 1, first) gives 0.1579 instead (the
# bisector then has a positive too: itself, with the two others close behind).
_PAIR = (torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5 ** 0.5, 0.5 ** 0.5]], dtype=torch.float64),
         torch.tensor([0, 0, 1]))
simple_check("smooth_ap_loss.query_excluded", SPEC.id, "smooth_ap_loss", 0.3,
             "the query is not ranked among the items (it is not its own positive)",
             lambda: [Call("smooth_ap_loss", list(_PAIR), {"tau": 0.1})],
             _expect_ap_loss(1 - 1 / (1 + _sigmoid(0.5 ** 0.5 / 0.1)),
                             "e1, e2 (label 0) and (e1 + e2) / sqrt(2) (label 1), tau 0.1: 1 - 1 / (1 + sigmoid(7.07))",
                             hints=[(0.1579, "the query seems to count as its own positive: exclude j = q")]))

simple_check("smooth_ap_loss.perfect_ranking", SPEC.id, "smooth_ap_loss", 0.3,
             "a perfect ranking (each class one point, classes orthogonal) gives loss 0",
             lambda: [Call("smooth_ap_loss", [torch.eye(3)[torch.tensor([0, 0, 1, 1, 2, 2])],
                                              torch.tensor([0, 0, 1, 1, 2, 2])], {"tau": 0.01})],
             _expect_ap_loss(0.0, "3 classes of 2 identical points on orthogonal axes, tau 0.01: loss",
                             hints=[(0.8, "check the sign of D_ij = s_j - s_i: G(D_ij) is about 1 when j ranks "
                                          "above i")]))


def _range_and_no_positive(outcomes, ctx):
    loss, problem = parsed(outcomes, loss_value, "smooth_ap_loss")
    if problem:
        return False, problem + " (a random batch of 4 classes x 4)"
    if not 0 <= loss <= 1:
        return False, f"1 - AP lies in [0, 1], got {loss:.4f} on a random batch of 4 classes x 4"
    alone, problem = loss_value(outcomes[1].value, "smooth_ap_loss")
    if problem:
        return False, problem + " when no query has a positive (average only over queries that have one)"
    if alone != 0:
        return False, f"when no query has a positive the loss should be 0, got {alone:.4f}"
    return True, "a 0-d loss in [0, 1] on a random batch, and 0 (not NaN) when no query has a positive"


simple_check("smooth_ap_loss.range", SPEC.id, "smooth_ap_loss", 0.2,
             "returns a 0-d loss in [0, 1]; 0 when no query has a positive (no NaN)",
             lambda: [smooth_ap_batch(4, 4),
                      Call("smooth_ap_loss", [unit_rows(5, 8, 4), torch.arange(5)], {"tau": 0.1})],
             _range_and_no_positive)

vectorized_check(SPEC.id, "smooth_ap_loss", 0.3, lambda s: smooth_ap_batch(4 * s, 4, instrument=True))


def _memory(outcomes, state, ctx):
    failure = failed(outcomes)
    if failure:
        return False, failure
    (small_b, large_b), (small, large) = MEMORY_BATCHES, [memory_used(o.counts) for o in outcomes]
    if small is None or large is None:
        return False, "the call could not be measured"
    m = MEMORY_PER_CLASS
    unit = large_b * m * large_b * 4  # one [B, m, B] float32 tensor at the large batch
    bound, cube = MEMORY_BOUND_UNITS * unit, large_b ** 3 * 4
    growth = large[0] / max(small[0], 1)
    grew = (f"from batch {small_b} to {large_b} it grew {growth:.1f}x ({_mb(small[0])} -> {_mb(large[0])}; "
            f"B^2 m grows {(large_b / small_b) ** 2:g}x, B^3 {(large_b / small_b) ** 3:g}x)")
    where = f"at batch B = {large_b} ({large_b // m} classes x m = {m} images)"
    if large[0] > bound or growth > MEMORY_GROWTH_LIMIT:
        what = (f"had up to {_mb(large[0])} allocated at once" if large[1] == "allocated" else
                f"worked on a tensor spanning {_mb(large[0])} (memory allocated before the call counts too)")
        vmap = (" A function vmapped over the queries counts its batched tensors: [B, B] per query is "
                "[B, B, B] in all." if ctx.source and "vmap" in ctx.source else "")
        return False, (f"{where} your function, with its backward pass, {what}, like B^3: a [B, B, B] float "
                       f"tensor alone is {_mb(cube)}, a [B, m, B] one {_mb(unit)}, and the limit is {_mb(bound)} "
                       f"({MEMORY_BOUND_UNITS} [B, m, B] float tensors); {grew}. Gather each query's m - 1 "
                       "positives first, so that the tensors are [B, m - 1, B], not [B, B, B]." + vmap)
    return True, (f"{where} your function, with its backward pass, had at most {_mb(large[0])} allocated at once "
                  f"({large[0] / unit:.1f} [B, m, B] float tensors; a [B, B, B] one is {_mb(cube)}); {grew}")


register(Check(id="smooth_ap_loss.memory", lab_id=SPEC.id, function="smooth_ap_loss", points=0.4,
               description=f"memory O(B^2 m) for m images per class, not O(B^3): the most memory allocated "
                           f"at once by the call and its backward pass at batch {MEMORY_BATCHES[0]} and "
                           f"{MEMORY_BATCHES[1]} ({MEMORY_PER_CLASS} images per class)",
               prepare=lambda: ([smooth_ap_memory_call(b) for b in MEMORY_BATCHES], None),
               judge=_memory))
