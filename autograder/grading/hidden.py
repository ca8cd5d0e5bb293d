"""Hidden checks: the student's functions against ``autograder.labs.<lab>.reference``, instructor side only.

Fixed inputs come with stored reference outputs (``autograder/labs/<lab>/reference_outputs.pt``,
written by ``python -m autograder.grading.reference_outputs``); fresh random inputs are drawn at
grading time and compared with the reference computed here, in the grader's process. Both are
built so that margins and ties matter (:func:`fixed_inputs`); tests/test_hidden_strength.py
proves that every typical mistake loses points on them.

Lab 2's submitted ``triplet_net.pt`` earns its mAP steps only as the lab's ConvNet with a history
that matches its epochs (``labtools.checks.public.submitted_checkpoint``) and when it is no copy
of one of the course's networks (:func:`copied_network`, asked by every check of the checkpoint).
"""

from __future__ import annotations

import hashlib
import random
from functools import lru_cache
from pathlib import Path

import torch

from labtools.checks.public import (
    CHECKPOINT_GATES, DVML_TERMS, _failed, _ap_result, _float_value, _loss_value, _map_result, describe_tensor, dvml_value,
    expect_tensor, history_losses, parsed, recall_value, submitted_checkpoint, synthetic_images, tiny_map_call,
    train_call, triplets_value, unit_rows,
)
from labtools.checks.registry import Call, Check, register

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
TOL = 1e-4
MAP_STEPS = ((0.90, 1.0), (0.95, 0.75), (0.98, 0.75))


def fixed_inputs() -> dict[str, dict[str, list]]:
    """The fixed inputs of the hidden checks: ``{function: {"args": [...], "kwargs": {...}}}``.

    Feature rows are clustered (:func:`clustered_rows`): distances within and
    between groups are comparable to the margins, some labels disagree with the groups (negatives
    next to their anchors) and some rows are exact copies of others (exact ties), so that a margin
    left out, an anchor or query counted as its own positive, or a strict inequality made loose
    changes the result. On random unit rows in 16 dimensions none of these would: every pair is at
    a squared distance of about 2.
    """
    images, labels = synthetic_images(12, 4, 21)
    g = torch.Generator().manual_seed(22)
    rows = clustered_rows(torch.arange(26) % 3, 8, 0.5, 23, duplicates=5)
    ap_labels = torch.randint(0, 4, (31,), generator=g)
    ap_labels[:2] = torch.tensor([2, 0])  # the query's label occurs, and another one does too
    smooth_labels = torch.tensor([0] * 8 + [1] * 6 + [2] * 6 + [3] * 6 + [4])
    return {
        "distances": {"args": [rows[:7], rows[7:]], "kwargs": {}},
        # distances on 8 levels: many ties, which keep their order (a stable sort)
        "evaluate_AP": {"args": [torch.randint(0, 8, (31,), generator=g) / 8, ap_labels, 2], "kwargs": {}},
        "evaluate_mAP": {"args": [{"__spec__": "convnet", "seed": 25},
                                  {"__spec__": "dataset", "images": images, "labels": labels}],
                         "kwargs": {"num_queries": 10}},
        "triplet_loss": {"args": clustered_batch(24, 8, 3, 5, 0.5, 26, duplicates=4),
                         "kwargs": {"alpha": 0.3, "num_anchors": 7}},
        # an unbalanced batch with a singleton class (a query without positives)
        "smooth_ap_loss": {"args": [clustered_rows(smooth_labels % 3, 8, 0.6, 27, duplicates=3), smooth_labels],
                           "kwargs": {"tau": 0.05}},
        "recall_at_k": {"args": clustered_batch(40, 8, 6, 6, 0.5, 28, duplicates=8),
                        "kwargs": {"ks": (1, 2, 4, 8, 16, 32)}},
        "nmi": {"args": list(tight_clusters(5, 8, 29)), "kwargs": {}},
        "f1": {"args": list(tight_clusters(4, 9, 30)), "kwargs": {}},
        "norm_softmax_loss": {"args": [unit_rows(20, 8, 31), torch.arange(20) % 7, unit_rows(7, 8, 32)],
                              "kwargs": {"temperature": 0.1}},
        "arcface_loss": {"args": [unit_rows(20, 8, 33), torch.arange(20) % 7, unit_rows(7, 8, 34)],
                         "kwargs": {"margin": 0.3, "scale": 16.0}},
        "kl_divergence": {"args": [unit_rows(9, 6, 35) * 2, unit_rows(9, 6, 36)], "kwargs": {}},
        "reparameterize": {"args": [unit_rows(9, 6, 37), unit_rows(9, 6, 38)],
                           "kwargs": {"generator": {"__spec__": "generator", "seed": 39}}},
        "semihard_triplets": {"args": clustered_batch(18, 8, 3, 4, 0.5, 40, duplicates=4), "kwargs": {"margin": 0.3}},
        "semihard_triplet_loss": {"args": clustered_batch(18, 8, 3, 4, 0.5, 41, duplicates=4),
                                  "kwargs": {"margin": 0.3}},
        "dvml_loss": {"args": dvml_inputs(12, 16, 4, 42), "kwargs": {"lambdas": (0.5, 1.0, 2.0, 1.5), "margin": 0.3}},
    }


def clustered_rows(groups: torch.Tensor, d: int, spread: float, seed: int, duplicates: int = 0) -> torch.Tensor:
    """Unit rows ``[N, d]`` on the grid of :func:`on_grid`, row i near the random unit centre of
    ``groups[i]`` (plus Gaussian noise of norm about ``spread``, then normalized: two rows of a group
    are at a squared distance of about 2 spread^2 / (1 + spread^2), 0.4 at spread 0.5);
    ``duplicates`` seeded rows are then replaced by exact copies of other rows, whatever their groups:
    exact ties, also between items of two labels."""
    g = torch.Generator().manual_seed(seed)
    groups = torch.as_tensor(groups)
    centers = torch.nn.functional.normalize(torch.randn(int(groups.max()) + 1, d, generator=g), dim=1)
    noise = spread / d ** 0.5 * torch.randn(len(groups), d, generator=g)
    rows = on_grid(torch.nn.functional.normalize(centers[groups] + noise, dim=1), g)
    if duplicates:
        order = torch.randperm(len(groups), generator=g)
        rows[order[:duplicates]] = rows[order[duplicates:2 * duplicates]]
    return rows


GRID = 16


def on_grid(rows: torch.Tensor, generator: torch.Generator, reach: int = 3) -> torch.Tensor:
    """Unit rows near ``rows`` ``[N, d]`` (unit, d >= 8) whose coordinates are multiples of 1 / GRID and
    whose squared norms are exactly 1.

    Every product of two coordinates is then a multiple of 1 / GRID^2 and every dot product, norm and
    distance of such rows is computed exactly in float32, whatever the order of the sums: two copies
    of a row are at exactly the same distance from a third row in any implementation (with arbitrary
    unit rows a matrix-vector product can round the two differently, and a tie the reference sees
    would not be one for a correct student function). Each row is rounded to the grid, then two of
    its coordinates are moved by at most ``reach`` steps each (one of them possibly by none) to the
    closest point of squared norm exactly 1 (a row whose rounding has none is moved slightly and
    rounded again)."""
    steps = torch.arange(-reach, reach + 1, dtype=torch.float64)
    rows, d = rows.double(), rows.shape[1]
    grid = torch.full_like(rows, torch.nan)
    for _ in range(20):
        todo = grid.isnan().any(dim=1)
        if not todo.any():
            return grid.float()
        target = rows[todo] * GRID  # [M, d]
        a = torch.round(target)
        gain = (a[:, :, None] + steps) ** 2 - a[:, :, None] ** 2  # [M, d, S]: change of the squared norm
        drift = (a[:, :, None] + steps - target[:, :, None]) ** 2 - (a - target)[:, :, None] ** 2  # [M, d, S]
        # coordinates i < j moved by steps s and t; a single coordinate moved: t = 0 (steps[reach] == 0)
        norm = (a * a).sum(dim=1)[:, None, None, None, None] + gain[:, :, None, :, None] + gain[:, None, :, None, :]
        cost = drift[:, :, None, :, None] + drift[:, None, :, None, :]
        pairs = torch.ones(d, d, dtype=torch.bool).triu(1)[None, :, :, None, None]
        cost = torch.where((norm == GRID * GRID) & pairs, cost, torch.inf).reshape(len(a), -1)  # [M, d d S S]
        best = cost.argmin(dim=1)
        found = cost.gather(1, best[:, None]).squeeze(1).isfinite()
        i, j, s, t = torch.unravel_index(best, (d, d, len(steps), len(steps)))
        rowsel = torch.arange(len(a))
        a[rowsel, i] += torch.where(found, steps[s], 0.0)
        a[rowsel, j] += torch.where(found, steps[t], 0.0)
        snapped = torch.where(found[:, None], a / GRID, torch.nan)
        grid[todo] = snapped
        # a row whose rounding has no point of norm 1 within reach is moved slightly and rounded again
        retry = todo.clone()
        retry[todo] = ~found
        rows[retry] = torch.nn.functional.normalize(
            rows[retry] + 0.5 / GRID * torch.randn(int(retry.sum()), d, generator=generator, dtype=rows.dtype), dim=1)
    raise ValueError("no grid point of norm 1 found near a row")


def clustered_batch(n: int, d: int, clusters: int, classes: int, spread: float, seed: int,
                    duplicates: int = 0) -> list[torch.Tensor]:
    """``[features, labels]`` of a batch of ``n`` rows in ``clusters`` groups (:func:`clustered_rows`);
    a label is the row's group, except for a seeded third drawn from ``classes`` labels: those rows
    are negatives within their group, next to its anchors. The first two rows have label 0 (an
    anchor with a positive); the last row is a copy of the first and the one before a copy of the
    second, both with label 1: negatives of that anchor at distance 0 and tied with its positive."""
    g = torch.Generator().manual_seed(seed + 1)
    groups = torch.randint(0, clusters, (n,), generator=g)
    groups[:2] = 0
    labels = groups.clone()
    relabel = torch.rand(n, generator=g) < 1 / 3
    relabel[:2] = False
    labels[relabel] = torch.randint(0, classes, (int(relabel.sum()),), generator=g)
    rows = clustered_rows(groups, d, spread, seed, duplicates)
    rows[-2:], labels[-2:] = rows[[1, 0]], 1
    return [rows, labels]


def dvml_inputs(b: int, f: int, d: int, seed: int) -> list[torch.Tensor]:
    """dvml_loss's tensor arguments for a batch of b: features and reconstruction [b, f], mu, logvar,
    z_inv (unit rows) and z_var [b, d], labels [b] of 3 classes."""
    g = torch.Generator().manual_seed(seed)
    features, reconstruction = torch.rand(b, f, generator=g), torch.rand(b, f, generator=g)
    mu, logvar, z_var = (0.3 * torch.randn(b, d, generator=g) for _ in range(3))
    labels = torch.randint(0, 3, (b,), generator=g)
    labels[:3] = torch.arange(3)
    return [features, mu, logvar, unit_rows(b, d, seed), z_var, reconstruction, labels]


def tight_clusters(clusters: int, per_cluster: int | list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``[N, 16]`` in tight groups of ``per_cluster`` rows (a number, or one per group) around
    random unit centres (any k-means finds the groups), and labels ``[N]``: the group, except for a
    seeded quarter relabelled at random and at least one row given the next group's label, every
    label used, the counts of the labels unlike the sizes of the groups (their entropies differ)."""
    g = torch.Generator().manual_seed(seed)
    sizes = torch.as_tensor(per_cluster).expand(clusters)
    groups = torch.arange(clusters).repeat_interleave(sizes)
    centers = unit_rows(clusters, 16, seed)[groups]
    features = torch.nn.functional.normalize(centers + 0.01 * torch.randn(centers.shape, generator=g), dim=1)
    labels = groups.clone()
    relabel = torch.rand(len(labels), generator=g) < 0.25
    labels[relabel] = torch.randint(0, clusters, (int(relabel.sum()),), generator=g)
    moved = int(torch.randint(0, len(labels), (1,), generator=g))
    labels[moved] = (groups[moved] + 1) % clusters
    for _ in range(100):  # every label used (k-means looks for as many clusters), counts unlike the groups' sizes
        counts = torch.bincount(labels, minlength=clusters)
        if (counts == 0).any():
            empty = int((counts == 0).nonzero()[0])
            labels[int((groups == empty).nonzero()[0])] = empty
        elif sorted(counts.tolist()) == sorted(sizes.tolist()):
            moved = int(torch.randint(0, len(labels), (1,), generator=g))
            labels[moved] = (labels[moved] + 1) % clusters
        else:
            break
    return features, labels


def build(spec):
    """The reference side of an argument spec (see ``labtools.checks.worker.build_arg``)."""
    from labtools.checks.worker import build_arg

    return build_arg(spec, "/nonexistent")


def reference_output(function: str, args, kwargs):
    from autograder.labs import reference
    from labtools.labs import lab_ids

    func = next(getattr(m, function) for m in map(reference, lab_ids()) if hasattr(m, function))
    return func(*[build(a) for a in args], **{k: build(v) for k, v in kwargs.items()})


def load_outputs(lab_id: str) -> dict:
    return torch.load(outputs_path(lab_id), weights_only=True)


def outputs_path(lab_id: str) -> Path:
    """The stored reference outputs of ``lab_id``'s hidden checks."""
    from autograder.labs import lab_dir

    return lab_dir(lab_id) / "reference_outputs.pt"


def _compare(function: str, value, expected, where: str) -> tuple[bool, str]:
    """Compare a student's output with the reference's; the message says what differs."""
    if function == "distances":
        problem = expect_tensor(value, "the distance matrix", list(expected.shape))
        if problem:
            return False, f"{where}: {problem}"
        err = (value.double() - expected.double()).abs().max().item()
        if err > TOL:
            return False, f"{where}: distances differ from the reference by up to {err:.2e} (tolerance {TOL:g})"
        return True, f"{where}: matches the reference (max error {err:.1e}, tolerance {TOL:g})"
    if function == "evaluate_AP":
        parts, problem = _ap_result(value, len(expected[1]), "evaluate_AP")
        if problem:
            return False, f"{where}: {problem}"
        for got, want, name in zip(parts, expected, ("ap", "precision", "recall")):
            err = (got.double() - want.double()).abs().max().item()
            if err > TOL:
                return False, f"{where}: {name} differs from the reference by up to {err:.2e} (tolerance {TOL:g})"
        return True, f"{where}: AP, precision and recall match the reference (tolerance {TOL:g})"
    if function == "evaluate_mAP":
        parts, problem = _map_result(value, len(expected[1]) + 1)
        if problem:
            return False, f"{where}: {problem}"
        errs = [abs(parts[0] - float(expected[0]))] + [
            (g.double() - w.double()).abs().max().item() for g, w in zip(parts[1:], expected[1:])]
        if max(errs) > TOL:
            return False, (f"{where}: mAP {parts[0]:.4f} vs reference {float(expected[0]):.4f}, curves off by up to "
                           f"{max(errs[1:]):.2e} (tolerance {TOL:g})")
        return True, f"{where}: mAP and PR curve match the reference (tolerance {TOL:g})"
    if function == "recall_at_k":
        got, problem = recall_value(value, list(expected))
        if problem:
            return False, f"{where}: {problem}"
        off = {k: round(got[k] - v, 4) for k, v in expected.items() if abs(got[k] - v) > TOL}
        if off:
            return False, f"{where}: Recall@K differs from the reference at K = {sorted(off)} (by {off})"
        return True, f"{where}: Recall@K matches the reference for K = {sorted(expected)}"
    if function in ("nmi", "f1"):
        got, problem = _float_value(value, function)
        if problem:
            return False, f"{where}: {problem}"
        if abs(got - float(expected)) > TOL:
            return False, f"{where}: {function} {got:.4f} vs reference {float(expected):.4f} (tolerance {TOL:g})"
        return True, f"{where}: matches the reference ({float(expected):.4f})"
    if function == "reparameterize":
        problem = expect_tensor(value, "the draw", list(expected.shape))
        if problem:
            return False, f"{where}: {problem}"
        err = (value.double() - expected.double()).abs().max().item()
        if err > TOL:
            return False, (f"{where}: with a seeded generator the draw differs from the reference's by up to {err:.2e}: "
                           "draw eps with torch.randn(mu.shape, generator=generator, ...) and return mu + sigma eps")
        return True, f"{where}: the seeded draw matches the reference (tolerance {TOL:g})"
    if function == "semihard_triplets":
        got, problem = triplets_value(value)
        if problem:
            return False, f"{where}: {problem}"
        want = set(zip(*(t.tolist() for t in expected)))
        if got != want:
            return False, (f"{where}: {len(got - want)} triplets too many and {len(want - got)} missing among the "
                           f"reference's {len(want)}")
        return True, f"{where}: the same {len(want)} triplets as the reference"
    if function == "dvml_loss":
        got, problem = dvml_value(value)
        if problem:
            return False, f"{where}: {problem}"
        want = [float(expected[0])] + [float(expected[1][k]) for k in DVML_TERMS]
        off = [name for name, g, w in zip(("total",) + DVML_TERMS, [got[0]] + [got[1][k] for k in DVML_TERMS], want)
               if abs(g - w) > TOL * max(1.0, abs(w))]
        if off:
            return False, f"{where}: {', '.join(off)} differ from the reference (relative tolerance {TOL:g})"
        return True, f"{where}: the total and the four terms match the reference (relative tolerance {TOL:g})"
    if function in ("triplet_loss", "smooth_ap_loss", "norm_softmax_loss", "arcface_loss", "kl_divergence",
                    "semihard_triplet_loss"):
        loss, problem = _loss_value(value, function)
        if problem:
            return False, f"{where}: {problem}"
        want = float(expected)
        if abs(loss - want) > TOL * max(1.0, abs(want)):
            return False, f"{where}: loss {loss:.5f} vs reference {want:.5f} (relative tolerance {TOL:g})"
        return True, f"{where}: matches the reference ({want:.4f}, relative tolerance {TOL:g})"
    raise ValueError(function)


def _random_inputs(function: str, rng: random.Random):
    """Fresh inputs of ``function``: clustered rows with exact ties (:func:`clustered_batch`),
    distances on a few levels (evaluate_AP), margins drawn among 0.1 ... 1."""
    seed = rng.randrange(1 << 30)
    g = torch.Generator().manual_seed(seed)
    if function == "distances":
        q, n, d = rng.randint(2, 12), rng.randint(5, 40), rng.choice([8, 16])
        rows = clustered_rows(torch.randint(0, rng.randint(1, 4), (q + n,), generator=g), d, rng.uniform(0.2, 1.2),
                              seed, duplicates=rng.randint(0, (q + n) // 4))
        return [rows[:q], rows[q:]], {}
    if function == "evaluate_AP":
        n, levels = rng.randint(10, 60), rng.randint(3, 12)
        labels = torch.randint(0, 4, (n,), generator=g)
        query = rng.randrange(4)
        labels[rng.randrange(n)] = query  # at least one relevant item
        return [torch.randint(0, levels, (n,), generator=g) / levels, labels, query], {}
    if function == "triplet_loss":
        b, clusters = rng.randint(10, 40), rng.randint(2, 4)
        return clustered_batch(b, rng.choice([8, 16]), clusters, clusters + rng.randint(0, 2),
                               rng.uniform(0.3, 0.8), seed, duplicates=rng.randint(1, b // 5)), {
            "alpha": rng.choice([0.1, 0.2, 0.5, 1.0]), "num_anchors": rng.randint(3, 10)}
    if function == "smooth_ap_loss":  # balanced batches (P classes x K images, shuffled) as in training
        classes, per_class = rng.randint(2, 6), rng.randint(2, 6)
        labels = torch.arange(classes).repeat_interleave(per_class)
        labels = labels[torch.randperm(len(labels), generator=g)]
        groups = labels % rng.randint(1, max(1, classes - 1))  # several classes share a group: they overlap
        rows = clustered_rows(groups, rng.choice([8, 16]), rng.uniform(0.4, 1.2), seed,
                              duplicates=rng.randint(0, len(labels) // 4))
        return [rows, labels], {"tau": rng.choice([0.01, 0.05, 0.1])}
    if function == "recall_at_k":
        n, clusters = rng.randint(12, 60), rng.randint(2, 6)
        features, labels = clustered_batch(n, rng.choice([8, 16]), clusters, clusters, rng.uniform(0.3, 0.8),
                                           seed, duplicates=rng.randint(1, n // 4))
        return [features, labels], {"ks": tuple(k for k in (1, 2, 4, 8, 16, 32) if k < n)}
    if function in ("nmi", "f1"):
        clusters = rng.randint(2, 6)
        return list(tight_clusters(clusters, [rng.randint(3, 10) for _ in range(clusters)], seed)), {}
    if function in ("norm_softmax_loss", "arcface_loss"):
        b, c = rng.randint(4, 40), rng.randint(2, 10)
        # temperatures below 1: at 1 a loss that ignores the temperature would pass
        kwargs = ({"temperature": rng.choice([0.05, 0.1, 0.5])} if function == "norm_softmax_loss"
                  else {"margin": rng.choice([0.1, 0.3, 0.5]), "scale": rng.choice([8.0, 16.0, 64.0])})
        return [unit_rows(b, 8, seed), torch.randint(0, c, (b,), generator=g), unit_rows(c, 8, seed + 1)], kwargs
    if function == "kl_divergence":
        b, d = rng.randint(2, 20), rng.randint(1, 8)
        return [torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)], {}
    if function in ("semihard_triplets", "semihard_triplet_loss"):
        b, clusters = rng.randint(10, 30), rng.randint(2, 4)
        return clustered_batch(b, rng.choice([8, 16]), clusters, clusters + 1, rng.uniform(0.3, 0.8), seed,
                               duplicates=rng.randint(1, b // 4)), {"margin": rng.choice([0.1, 0.2, 0.5, 1.0])}
    if function == "dvml_loss":
        return dvml_inputs(rng.randint(6, 24), rng.choice([8, 16]), rng.choice([2, 4]), seed), {
            "lambdas": tuple(rng.choice([0.0, 0.5, 1.0, 2.0]) for _ in range(4)), "margin": rng.choice([0.2, 0.5])}
    raise ValueError(function)


def _register_value_checks(lab_id: str, function: str, points_fixed: float, points_random: float):
    def fixed_prepare():
        stored = load_outputs(lab_id)[function]
        return [Call(function, stored["args"], stored["kwargs"])], stored["output"]

    def fixed_judge(outcomes, expected, ctx):
        failure = _failed(outcomes)
        return (False, failure) if failure else _compare(function, outcomes[0].value, expected, "fixed inputs")

    register(Check(f"{function}.hidden_fixed", lab_id, function, points_fixed,
                   f"{function} matches the reference on fixed inputs", fixed_prepare, fixed_judge, hidden=True))
    if not points_random:
        return

    def random_prepare():
        rng = random.Random()
        cases = [_random_inputs(function, rng) for _ in range(3)]
        calls = [Call(function, args, kwargs) for args, kwargs in cases]
        return calls, [reference_output(function, args, kwargs) for args, kwargs in cases]

    def random_judge(outcomes, expected, ctx):
        failure = _failed(outcomes)
        if failure:
            return False, failure
        for i, (outcome, want) in enumerate(zip(outcomes, expected)):
            ok, message = _compare(function, outcome.value, want, f"random input {i + 1} of {len(expected)}")
            if not ok:
                return False, message
        return True, f"matches the reference on {len(expected)} random inputs drawn at grading time (tolerance {TOL:g})"

    register(Check(f"{function}.hidden_random", lab_id, function, points_random,
                   f"{function} matches the reference on random inputs", random_prepare, random_judge, hidden=True))


_register_value_checks("lab1_retrieval", "distances", 0.4, 0.4)
_register_value_checks("lab1_retrieval", "evaluate_AP", 0.4, 0.4)
_register_value_checks("lab1_retrieval", "evaluate_mAP", 0.3, 0.0)
_register_value_checks("lab2_triplet", "triplet_loss", 0.5, 0.5)
_register_value_checks("lab3_smoothap", "smooth_ap_loss", 0.5, 0.5)
for _function, _points in (("recall_at_k", 0.25), ("nmi", 0.25), ("f1", 0.25), ("norm_softmax_loss", 0.15),
                           ("arcface_loss", 0.15)):
    _register_value_checks("lab4_beyond", _function, _points, _points)
for _function, _fixed, _random in (("kl_divergence", 0.15, 0.15), ("reparameterize", 0.3, 0.0),
                                   ("semihard_triplets", 0.15, 0.15), ("semihard_triplet_loss", 0.15, 0.15),
                                   ("dvml_loss", 0.2, 0.2)):
    _register_value_checks("lab5_dvml", _function, _fixed, _random)


# ----------------------------------------------------------------------------------------------
# MNIST: the shipped classifier through the student's evaluate_mAP, the submitted checkpoint


def classifier_path() -> Path:
    for name in ("mnist_classifier.pt", "mnist_classifier.train.pt"):
        if (MODELS_DIR / name).is_file():
            return MODELS_DIR / name
    raise FileNotFoundError(f"no mnist_classifier.pt in {MODELS_DIR}")


@lru_cache(maxsize=1)
def mnist_test():
    from labtools.data import fixed_test_set

    return fixed_test_set("MNIST", download=False)


@lru_cache(maxsize=16)
def reference_map(path: str, digest: str) -> float:
    """mAP of the first 100 queries of the fixed MNIST test set, by the reference evaluator.

    Raises ValueError saying why when the checkpoint's features cannot be ranked: NaN or infinite
    values, or images whose feature vector is all zero (normalizing leaves it at zero)."""
    from autograder.evaluation import full_ranking_ap
    from labtools.models import extract_features, load_checkpoint

    net, _ = load_checkpoint(path)
    images, labels = mnist_test().tensors
    features = extract_features(net, images, progress=False)
    if not torch.isfinite(features).all():
        raise ValueError("its features of the fixed MNIST test set contain NaN or infinite values "
                         "(did its training diverge?)")
    dead = int((features.norm(dim=1) < 0.5).sum())  # normalize leaves an all-zero embedding at zero
    if dead:
        raise ValueError(f"{dead} of the {len(features)} images of the fixed MNIST test set get an all-zero "
                         f"feature vector (every ReLU output zero: a collapsed network)")
    return full_ranking_ap(features, labels)[:100].mean().item()


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _classifier_prepare():
    path = classifier_path()
    images, labels = mnist_test().tensors
    call = Call("evaluate_mAP", [{"__spec__": "convnet", "checkpoint": str(path)},
                                 {"__spec__": "dataset", "images": images, "labels": labels}], {"num_queries": 100})
    return [call], reference_map(str(path), file_digest(path))


def _classifier_judge(outcomes, expected, ctx):
    parts, problem = parsed(outcomes, _map_result, 1000)
    if problem:
        return False, problem
    if abs(parts[0] - expected) > TOL:
        return False, (f"the shipped classifier on the fixed MNIST test set: your mAP {parts[0]:.4f}, reference "
                       f"{expected:.4f} (tolerance {TOL:g})")
    return True, f"the shipped classifier on the fixed MNIST test set: mAP {parts[0]:.4f} as the reference"


register(Check("evaluate_mAP.hidden_classifier", "lab1_retrieval", "evaluate_mAP", 0.5,
               "mAP of the shipped classifier on the fixed MNIST test set equals the reference's",
               _classifier_prepare, _classifier_judge, hidden=True))


def _train_lowers_prepare():
    return [train_call()], None


def _train_lowers_judge(outcomes, state, ctx):
    failure = _failed(outcomes)
    if failure:
        return False, failure
    from autograder.labs.lab2_triplet.reference import triplet_loss
    from labtools.models import load_checkpoint

    try:
        trained, _ = load_checkpoint(outcomes[0].scratch / "check_triplet.pt")
    except Exception as error:
        return False, f"no checkpoint to measure: {error}"
    initial = build({"__spec__": "convnet", "seed": 0})
    images, labels = synthetic_images(10, 4, 11)
    with torch.no_grad():
        before = triplet_loss(initial.eval().features(images), labels, alpha=0.5, num_anchors=40).item()
        after = triplet_loss(trained.eval().features(images), labels, alpha=0.5, num_anchors=40).item()
    if not after < before:
        return False, f"the reference triplet loss of the trained net did not go down ({before:.3f} -> {after:.3f})"
    return True, f"the reference triplet loss of the trained net went down ({before:.3f} -> {after:.3f})"


register(Check("train_triplets.hidden_lowers_loss", "lab2_triplet", "train_triplets", 0.5,
               "the checkpoint train_triplets wrote has a lower reference triplet loss than the initial net",
               _train_lowers_prepare, _train_lowers_judge, hidden=True))


# ----------------------------------------------------------------------------------------------
# Lab 2: the submitted triplet_net.pt is the student's own network, not a copy of one of the course's

#: Relative distance below which a submitted network's weights count as a copy of an instructor
#: network's (:func:`weight_distance`). A copy saved through float16 is at 0.0002 of the original,
#: through bfloat16 at 0.0017, and noise of 1% of each tensor's norm puts it at 0.0105 (the mAP does
#: not change: noise of 30% still leaves mnist_triplet at 0.97). Networks that are not copies are far
#: above: the closest to any of the course's networks is the untrained seed-0 ConvNet at 0.26 (from
#: the Lab 4 EPSHN backbones trained 10 epochs from it), the closest two of the course's networks are
#: at 0.31, a network trained for one epoch from seed 0 or 1 is at 1.2 or more from all of them, and
#: 100 SGD steps (lr 0.02) of fine-tuning move mnist_triplet by 0.028 (tests/test_checkpoint_copies.py
#: and tests/test_grading_e2e.py measure these cases).
NEAR_COPY = 0.01
#: The layers of ConvNet.features (``10`` is the classification layer, which the features do not use).
FEATURE_LAYERS = (("0.weight", (32, 1, 3, 3)), ("0.bias", (32,)), ("3.weight", (32, 32, 3, 3)), ("3.bias", (32,)),
                  ("6.weight", (64, 32, 3, 3)), ("6.bias", (64,)))


def instructor_model_dirs() -> list[Path]:
    """Every folder the grader reads the course's networks from: the repository's ``models/`` and
    :func:`labtools.paths.models_dir` (``LABTOOLS_MODELS`` when set)."""
    from labtools.paths import models_dir

    found = [MODELS_DIR]
    try:
        found.append(models_dir())
    except FileNotFoundError:
        pass
    unique = []
    for folder in found:
        if folder.is_dir() and folder.resolve() not in [u.resolve() for u in unique]:
            unique.append(folder)
    return unique


@lru_cache(maxsize=1)
def instructor_networks() -> tuple:
    """``((name, sha256, {prefix: feature layers}), ...)`` of every ``.pt`` under the instructor's model
    folders (``lab4/``, ``lab5/``, ``*.train.pt`` and ``*.best.pt`` included): the file's digest and the
    ConvNet feature layers it holds (a ConvNet's, the backbone of an EmbeddingNet or a DVML).
    Computed here, in the grader's process, never in the sandboxed worker."""
    found = []
    for folder in instructor_model_dirs():
        for path in sorted(folder.rglob("*.pt")):
            try:
                record = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # not a checkpoint (or unreadable): nothing to compare with
                continue
            state = record.get("state_dict", record) if isinstance(record, dict) else {}
            found.append((path.relative_to(folder).as_posix(), file_digest(path), convnet_parts(state)))
    return tuple(found)


def convnet_parts(state) -> dict[str, dict[str, torch.Tensor]]:
    """The ConvNet feature layers in a state dict, by key prefix (``""``, ``"backbone."``, ...), in float64."""
    parts = {}
    if not isinstance(state, dict):
        return parts
    for key in state:
        if isinstance(key, str) and key.endswith("0.weight"):
            prefix = key[: -len("0.weight")]
            tensors = {name: state.get(prefix + name) for name, _ in FEATURE_LAYERS}
            if all(isinstance(t, torch.Tensor) and tuple(t.shape) == shape and t.is_floating_point()
                   for (name, shape), t in zip(FEATURE_LAYERS, tensors.values())):
                parts[prefix] = {name: t.detach().double() for name, t in tensors.items()}
    return parts


def _canonical(part: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The feature layers without their rescaling symmetry: rows (output channels) of ``[weights, bias]``.

    ReLU and max-pooling commute with a positive scale, so scaling an output channel of conv 0 or 3
    (its weights and bias) by c and that channel's input weights in the next layer by 1 / c leaves
    the network's function unchanged, and so does scaling the whole last layer (the features are
    L2-normalized). Each row of layers 0 and 3 is brought to norm 1 (its norm carried into the next
    layer) and layer 6 as a whole. Returns the rows and their norms."""
    w0 = torch.cat([part["0.weight"].flatten(1), part["0.bias"][:, None]], dim=1)
    n0 = w0.norm(dim=1).clamp_min(1e-30)
    w3 = part["3.weight"] * n0[None, :, None, None]
    w3 = torch.cat([w3.flatten(1), part["3.bias"][:, None]], dim=1)
    n3 = w3.norm(dim=1).clamp_min(1e-30)
    w6 = part["6.weight"] * n3[None, :, None, None]
    w6 = torch.cat([w6.flatten(1), part["6.bias"][:, None]], dim=1)
    n6 = w6.norm().clamp_min(1e-30)
    return [w0 / n0[:, None], w3 / n3[:, None], w6 / n6], [n0, n3, n6]


def _match(reference: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``m`` such that ``rows[m[j]]`` is paired with ``reference[j]``: a one-to-one pairing, the most
    similar (cosine) pairs first."""
    sim = torch.nn.functional.normalize(reference, dim=1) @ torch.nn.functional.normalize(rows, dim=1).T
    pairing, taken, width = {}, set(), sim.shape[1]
    for flat in sim.flatten().argsort(descending=True).tolist():
        j, k = divmod(flat, width)
        if j not in pairing and k not in taken:
            pairing[j] = k
            taken.add(k)
            if len(pairing) == len(reference):
                break
    return torch.tensor([pairing[j] for j in range(len(reference))])


def _inputs_permuted(rows: torch.Tensor, pairing: torch.Tensor) -> torch.Tensor:
    """Rows ``[out, in * 9 + 1]`` of a conv layer with their input channels in the order ``pairing``."""
    weights = rows[:, :-1].reshape(len(rows), -1, 9)[:, pairing]
    return torch.cat([weights.flatten(1), rows[:, -1:]], dim=1)


def weight_distance(part: dict, reference: dict) -> float:
    """Relative L2 distance of a network's feature layers to a reference network's, up to what leaves
    the features unchanged: the order of the channels (matched one to one, layer after layer) and
    their positive rescaling (:func:`_canonical`). The difference is measured in the reference's own
    scale, so that it reads as ``||w - w_ref|| / ||w_ref||``: 0 for a copy, however its channels are
    permuted or rescaled, 0.01 for noise of 1% of each tensor's norm."""
    if all(torch.equal(part[name], reference[name]) for name, _ in FEATURE_LAYERS):
        return 0.0
    mine, _ = _canonical(part)
    theirs, (n0, n3, n6) = _canonical(reference)
    # back to the reference's scale: row r of a layer is (weights * out norm / in norms, bias * out norm)
    scales = [lambda r: r * n0[:, None],
              lambda r: torch.cat([(r[:, :-1].reshape(32, 32, 9) * n3[:, None, None] / n0[None, :, None]).flatten(1),
                                   r[:, -1:] * n3[:, None]], dim=1),
              lambda r: torch.cat([(r[:, :-1].reshape(64, 32, 9) * n6 / n3[None, :, None]).flatten(1),
                                   r[:, -1:] * n6], dim=1)]
    total = sum(float(scale(rows).square().sum()) for scale, rows in zip(scales, theirs))
    far = NEAR_COPY ** 2 * total * 100  # far beyond a copy already: no need to match the next layers
    squared = 0.0
    for layer, scale in enumerate(scales):
        pairing = _match(theirs[layer], mine[layer])
        mine[layer] = mine[layer][pairing]
        if layer + 1 < len(mine):
            mine[layer + 1] = _inputs_permuted(mine[layer + 1], pairing)
        squared += float((scale(mine[layer]) - scale(theirs[layer])).square().sum())
        if squared > far:
            break
    return (squared / total) ** 0.5


_COPIES: dict[str, str | None] = {}


def copied_network(path, record, name: str = "triplet_net.pt") -> str | None:
    """Why the submitted checkpoint ``path`` (read as ``record``) is not the student's own network,
    or ``None``: its file is one of the course's, or its feature layers (or those of the network it
    holds) are within :data:`NEAR_COPY` of those of one of :func:`instructor_networks`."""
    digest = file_digest(path)
    if digest not in _COPIES:
        _COPIES[digest] = _copied(digest, record, name)
    return _COPIES[digest]


def _copied(digest: str, record, name: str) -> str | None:
    advice = "submit the network your train_triplets trained"
    networks = instructor_networks()
    for course_name, course_digest, _ in networks:
        if digest == course_digest:
            return f"{name} has the same weights as the course's own network {course_name}: {advice}"
    parts = convnet_parts(record.get("state_dict") if isinstance(record, dict) else None)
    for part in parts.values():
        for course_name, _, course_parts in networks:
            for reference in course_parts.values():
                distance = weight_distance(part, reference)
                if distance < NEAR_COPY:
                    same = "the same weights as" if distance < 1e-6 else "nearly the same weights as"
                    return f"{name} has {same} the course's own network {course_name}: {advice}"
    return None


if copied_network not in CHECKPOINT_GATES:  # asked first by every check of a submitted checkpoint
    CHECKPOINT_GATES.append(copied_network)


def _map_step(threshold: float, points: float):
    def judge(outcomes, state, ctx):
        path = (ctx.files / "triplet_net.pt") if ctx.files else None
        _, _, problem = submitted_checkpoint(path)
        if problem:  # no file, not the lab's ConvNet, a history that contradicts its epochs, a copy
            return False, problem
        try:
            value = reference_map(str(path), file_digest(path))
        except ValueError as error:  # features the evaluator cannot rank
            return False, f"the mAP of triplet_net.pt cannot be measured: {error}"
        verdict = "reaches" if value >= threshold else "is below"
        return value >= threshold, f"mAP of triplet_net.pt (reference evaluator, 100 queries) {value:.4f} {verdict} {threshold:.2f}"

    register(Check(f"checkpoint.hidden_map_{int(round(threshold * 100))}", "lab2_triplet", "checkpoint", points,
                   f"mAP of the submitted checkpoint >= {threshold:.2f}", lambda: ([], None), judge, hidden=True,
                   kind="file"))


for _threshold, _points in MAP_STEPS:
    _map_step(_threshold, _points)


def hidden_checks(lab_id: str, function: str | None = None) -> list[Check]:
    from labtools.checks.registry import checks_for

    return checks_for(lab_id, function, hidden=True)


# ----------------------------------------------------------------------------------------------
# Lab 4: the NormSoftmax head on fresh random inputs (without projection it has no random weights)


def _head_prepare():
    from autograder.labs.lab4_beyond.reference import NormSoftmax

    seed = random.Random().randrange(1 << 30)
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


register(Check("NormSoftmax.hidden_random", "lab4_beyond", "NormSoftmax", 0.2,
               "NormSoftmax(16, 5) embeds random inputs as the reference does", _head_prepare, _head_judge,
               hidden=True))
