"""The generators of the hidden checks' inputs that several labs share (instructor side only).

Feature rows are clustered (:func:`clustered_rows`): distances within and between groups are
comparable to the margins, some labels disagree with the groups (negatives next to their anchors)
and some rows are exact copies of others (exact ties), so that a margin left out, an anchor or
query counted as its own positive, or a strict inequality made loose changes the result. On random
unit rows in 16 dimensions none of these would: every pair is at a squared distance of about 2.
Their coordinates lie on a grid (:func:`on_grid`) on which every distance is computed exactly, so
that a tie the reference sees is one for any correct implementation.
"""

from __future__ import annotations

import torch

from labtools.checks.builders import unit_rows


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
