"""Lab 4's hidden checks: recall_at_k, nmi, f1, the two classification losses and the similarity
maps against the reference, and the NormSoftmax head on random inputs."""

from __future__ import annotations

import random

import torch

from autograder.grading.hidden import TOL, HiddenValues, fresh_random, register_values, same_loss
from autograder.grading.inputs import clustered_batch, tight_clusters
from labtools.checks.builders import unit_rows
from labtools.checks.registry import Call, Check, register
from labtools.judges import expect_tensor, float_value, parsed
from labtools.labs.lab4_beyond import maps_value, pair_images, recall_value

LAB = "lab4_beyond"


def recall_fixed():
    return clustered_batch(40, 8, 6, 6, 0.5, 28, duplicates=8), {"ks": (1, 2, 4, 8, 16, 32)}


def recall_random(rng: random.Random):
    seed = rng.randrange(1 << 30)
    n, clusters = rng.randint(12, 60), rng.randint(2, 6)
    features, labels = clustered_batch(n, rng.choice([8, 16]), clusters, clusters, rng.uniform(0.3, 0.8),
                                       seed, duplicates=rng.randint(1, n // 4))
    return [features, labels], {"ks": tuple(k for k in (1, 2, 4, 8, 16, 32) if k < n)}


def recall_compare(value, expected, where):
    got, problem = recall_value(value, list(expected))
    if problem:
        return False, f"{where}: {problem}"
    off = {k: round(got[k] - v, 4) for k, v in expected.items() if abs(got[k] - v) > TOL}
    if off:
        return False, f"{where}: Recall@K differs from the reference at K = {sorted(off)} (by {off})"
    return True, f"{where}: Recall@K matches the reference for K = {sorted(expected)}"


def clusters_random(rng: random.Random):
    """Features in tight groups of random sizes, labels of nmi and f1."""
    seed = rng.randrange(1 << 30)
    clusters = rng.randint(2, 6)
    return list(tight_clusters(clusters, [rng.randint(3, 10) for _ in range(clusters)], seed)), {}


def same_score(function: str):
    """The comparison of a clustering score (a float) with the reference's."""
    def compare(value, expected, where):
        got, problem = float_value(value, function)
        if problem:
            return False, f"{where}: {problem}"
        if abs(got - float(expected)) > TOL:
            return False, f"{where}: {function} {got:.4f} vs reference {float(expected):.4f} (tolerance {TOL:g})"
        return True, f"{where}: matches the reference ({float(expected):.4f})"
    return compare


def norm_softmax_fixed():
    return [unit_rows(20, 8, 31), torch.arange(20) % 7, unit_rows(7, 8, 32)], {"temperature": 0.1}


def arcface_fixed():
    return [unit_rows(20, 8, 33), torch.arange(20) % 7, unit_rows(7, 8, 34)], {"margin": 0.3, "scale": 16.0}


def classification_random(draw_kwargs):
    """Random inputs of a classification loss: unit features and class weights, labels, and the
    loss's keyword arguments ``draw_kwargs(rng)``."""
    def draw(rng: random.Random):
        seed = rng.randrange(1 << 30)
        g = torch.Generator().manual_seed(seed)
        b, c = rng.randint(4, 40), rng.randint(2, 10)
        kwargs = draw_kwargs(rng)
        return [unit_rows(b, 8, seed), torch.randint(0, c, (b,), generator=g), unit_rows(c, 8, seed + 1)], kwargs
    return draw


def maps_fixed():
    return [{"__spec__": "convnet", "seed": 7}, *pair_images(5, 11)], {}


def maps_random(rng: random.Random):
    """A ConvNet of random seeded weights and 2 to 6 pairs of seeded toy images."""
    return [{"__spec__": "convnet", "seed": rng.randrange(1 << 30)},
            *pair_images(rng.randint(2, 6), rng.randrange(1 << 30))], {}


def maps_compare(value, expected, where):
    got, problem = maps_value(value, len(expected[0]))
    if problem:
        return False, f"{where}: {problem}"
    for side, mine, theirs in zip(("query", "retrieved"), got, expected):
        scale = max(theirs.abs().max().item(), 1e-12)
        err = (mine - theirs).abs().max().item() / scale
        if err > TOL:
            return False, (f"{where}: the {side} maps differ from the reference's by up to {err:.2e} of their "
                           f"largest value (tolerance {TOL:g})")
    return True, f"{where}: both maps match the reference (relative tolerance {TOL:g})"


VALUES = (
    HiddenValues("recall_at_k", (0.25, 0.25), recall_fixed, recall_compare, recall_random),
    HiddenValues("nmi", (0.25, 0.25), lambda: (list(tight_clusters(5, 8, 29)), {}), same_score("nmi"), clusters_random),
    HiddenValues("f1", (0.25, 0.25), lambda: (list(tight_clusters(4, 9, 30)), {}), same_score("f1"), clusters_random),
    # temperatures below 1: at 1 a loss that ignores the temperature would pass
    HiddenValues("norm_softmax_loss", (0.15, 0.15), norm_softmax_fixed, same_loss("norm_softmax_loss"),
                 classification_random(lambda rng: {"temperature": rng.choice([0.05, 0.1, 0.5])})),
    HiddenValues("arcface_loss", (0.15, 0.15), arcface_fixed, same_loss("arcface_loss"),
                 classification_random(lambda rng: {"margin": rng.choice([0.1, 0.3, 0.5]),
                                                    "scale": rng.choice([8.0, 16.0, 64.0])})),
    HiddenValues("similarity_maps", (0.2, 0.2), maps_fixed, maps_compare, maps_random),
)
register_values(LAB, VALUES)


# ----------------------------------------------------------------------------------------------
# The NormSoftmax head on fresh random inputs (without projection it has no random weights)


def _head_prepare():
    from autograder.labs.lab4_beyond.reference import NormSoftmax

    seed = fresh_random().randrange(1 << 30)
    x = 2 * torch.randn(6, 16, generator=torch.Generator().manual_seed(seed)) + 0.5
    with torch.no_grad():
        expected = NormSoftmax(16, 5)(x)
    return [Call("NormSoftmax", [16, 5], {}, then=[{"call": [x]}])], expected


def _head_judge(outcomes, expected, ctx):
    value, problem = parsed(outcomes, lambda v: (v, expect_tensor(v, "NormSoftmax(16, 5)(x)", list(expected.shape))))
    if problem:
        return False, problem
    err = (value.double() - expected.double()).abs().max().item()
    if err > TOL:
        return False, f"the embedding differs from the reference's by up to {err:.2e} (tolerance {TOL:g})"
    return True, f"the embedding of random inputs drawn at grading time matches the reference (tolerance {TOL:g})"


register(Check("NormSoftmax.hidden_random", LAB, "NormSoftmax", 0.2,
               "NormSoftmax(16, 5) embeds random inputs as the reference does", _head_prepare, _head_judge,
               hidden=True))
