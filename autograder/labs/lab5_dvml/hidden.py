"""Lab 5's hidden checks: kl_divergence, reparameterize, semihard_triplets, semihard_triplet_loss and
dvml_loss against the reference."""

from __future__ import annotations

import random

import torch

from autograder.grading.hidden import TOL, HiddenValues, register_values, same_loss
from autograder.grading.inputs import clustered_batch, dvml_inputs
from labtools.checks.builders import unit_rows
from labtools.judges import expect_tensor
from labtools.labs.lab5_dvml import DVML_TERMS, dvml_value, triplets_value

LAB = "lab5_dvml"


def kl_random(rng: random.Random):
    g = torch.Generator().manual_seed(rng.randrange(1 << 30))
    b, d = rng.randint(2, 20), rng.randint(1, 8)
    return [torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)], {}


def reparameterize_compare(value, expected, where):
    problem = expect_tensor(value, "the draw", list(expected.shape))
    if problem:
        return False, f"{where}: {problem}"
    err = (value.double() - expected.double()).abs().max().item()
    if err > TOL:
        return False, (f"{where}: with a seeded generator the draw differs from the reference's by up to {err:.2e}: "
                       "draw eps with torch.randn(mu.shape, generator=generator, ...) and return mu + sigma eps")
    return True, f"{where}: the seeded draw matches the reference (tolerance {TOL:g})"


def semihard_random(rng: random.Random):
    """Inputs of semihard_triplets and semihard_triplet_loss."""
    seed = rng.randrange(1 << 30)
    b, clusters = rng.randint(10, 30), rng.randint(2, 4)
    return clustered_batch(b, rng.choice([8, 16]), clusters, clusters + 1, rng.uniform(0.3, 0.8), seed,
                           duplicates=rng.randint(1, b // 4)), {"margin": rng.choice([0.1, 0.2, 0.5, 1.0])}


def triplets_compare(value, expected, where):
    got, problem = triplets_value(value)
    if problem:
        return False, f"{where}: {problem}"
    want = set(zip(*(t.tolist() for t in expected)))
    if got != want:
        return False, (f"{where}: {len(got - want)} triplets too many and {len(want - got)} missing among the "
                       f"reference's {len(want)}")
    return True, f"{where}: the same {len(want)} triplets as the reference"


def dvml_random(rng: random.Random):
    seed = rng.randrange(1 << 30)
    return dvml_inputs(rng.randint(6, 24), rng.choice([8, 16]), rng.choice([2, 4]), seed), {
        "lambdas": tuple(rng.choice([0.0, 0.5, 1.0, 2.0]) for _ in range(4)), "margin": rng.choice([0.2, 0.5])}


def dvml_compare(value, expected, where):
    got, problem = dvml_value(value)
    if problem:
        return False, f"{where}: {problem}"
    want = [float(expected[0])] + [float(expected[1][k]) for k in DVML_TERMS]
    off = [name for name, g, w in zip(("total",) + DVML_TERMS, [got[0]] + [got[1][k] for k in DVML_TERMS], want)
           if abs(g - w) > TOL * max(1.0, abs(w))]
    if off:
        return False, f"{where}: {', '.join(off)} differ from the reference (relative tolerance {TOL:g})"
    return True, f"{where}: the total and the four terms match the reference (relative tolerance {TOL:g})"


VALUES = (
    HiddenValues("kl_divergence", (0.15, 0.15), lambda: ([unit_rows(9, 6, 35) * 2, unit_rows(9, 6, 36)], {}),
                 same_loss("kl_divergence"), kl_random),
    HiddenValues("reparameterize", (0.3, 0.0),
                 lambda: ([unit_rows(9, 6, 37), unit_rows(9, 6, 38)],
                          {"generator": {"__spec__": "generator", "seed": 39}}),
                 reparameterize_compare),
    HiddenValues("semihard_triplets", (0.15, 0.15),
                 lambda: (clustered_batch(18, 8, 3, 4, 0.5, 40, duplicates=4), {"margin": 0.3}), triplets_compare,
                 semihard_random),
    HiddenValues("semihard_triplet_loss", (0.15, 0.15),
                 lambda: (clustered_batch(18, 8, 3, 4, 0.5, 41, duplicates=4), {"margin": 0.3}),
                 same_loss("semihard_triplet_loss"), semihard_random),
    HiddenValues("dvml_loss", (0.2, 0.2),
                 lambda: (dvml_inputs(12, 16, 4, 42), {"lambdas": (0.5, 1.0, 2.0, 1.5), "margin": 0.3}),
                 dvml_compare, dvml_random),
)
register_values(LAB, VALUES)
