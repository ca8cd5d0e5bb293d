"""Lab 5 reference: Deep Variational Metric Learning (Lin et al., ECCV 2018).

The KL term, the reparameterized draw of the intra-class variance, semi-hard triplet mining and
its loss, and the combined DVML loss of the outputs of ``labtools.dvml.DVML``. Distances are
squared Euclidean between L2-normalized rows (Lab 1's ``distances``). Every function is loop-free.
"""

import torch
from torch.nn import functional as F

from autograder.labs.lab1_retrieval.reference import distances
from labtools.validate import check_features, check_labels, check_pair


def kl_divergence(mu, logvar):
    """KL(N(mu, diag(sigma^2)) || N(0, I)), summed over the dimensions, averaged over the batch.

    mu, logvar: [B, D], logvar = log sigma^2. Per row, 0.5 sum_d (sigma^2 + mu^2 - 1 - log sigma^2).
    Returns a 0-d tensor.
    """
    check_pair(mu, logvar, "mu", "logvar")
    return 0.5 * (logvar.exp() + mu.square() - 1 - logvar).sum(dim=1).mean()


def reparameterize(mu, logvar, generator=None):
    """A draw of N(mu, diag(sigma^2)) as mu + sigma * eps, eps ~ N(0, I), differentiable in mu and logvar.

    mu, logvar: [B, D], logvar = log sigma^2, so sigma = exp(logvar / 2). eps [B, D] is drawn with
    ``generator`` (a torch.Generator on mu's device; the global generator when None).
    Returns [B, D].
    """
    check_pair(mu, logvar, "mu", "logvar")
    if generator is not None and (not isinstance(generator, torch.Generator) or generator.device != mu.device):
        raise ValueError(f"generator must be a torch.Generator on mu's device {mu.device}, got {generator!r}")
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + (0.5 * logvar).exp() * eps


def semihard_triplets(features, labels, margin=0.2):
    """Every semi-hard triplet (a, p, n) of a batch: d(a, p) < d(a, n) < d(a, p) + margin.

    features: [B, D] (rows L2-normalized here), labels: [B] integers, margin > 0. d is the squared
    Euclidean distance between the normalized rows; p != a has a's label, n another label. The
    mining does not need a gradient and uses detached features; it broadcasts a [B, B, B] mask.
    Returns three int64 [T] tensors (anchors, positives, negatives), sorted by a, then p, then n.
    """
    check_features(features)
    check_labels(labels, len(features))
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin}")
    unit = F.normalize(features.detach(), dim=1)
    dist = distances(unit, unit)  # [B, B]
    same = labels[:, None] == labels[None, :]  # [B, B]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    ap, an = dist[:, :, None], dist[:, None, :]  # d(a, p) along dim 1, d(a, n) along dim 2
    mask = positive[:, :, None] & ~same[:, None, :] & (an > ap) & (an < ap + margin)  # [B, B, B]
    return mask.nonzero(as_tuple=True)  # row-major order: sorted by a, then p, then n


def semihard_triplet_loss(features, labels, margin=0.2):
    """Mean of max(d(a, p) - d(a, n) + margin, 0) over the semi-hard triplets of the batch.

    features: [B, D] (rows L2-normalized here), labels: [B] integers, margin > 0; the triplets and
    d as in ``semihard_triplets``. Returns a 0-d tensor, 0 (with a zero gradient) when the batch
    has no semi-hard triplet.
    """
    a, p, n = semihard_triplets(features, labels, margin)
    unit = F.normalize(features, dim=1)
    dist = distances(unit, unit)  # [B, B]
    hinge = (dist[a, p] - dist[a, n] + margin).clamp_min(0)  # [T]
    return hinge.sum() / max(len(a), 1)


def dvml_loss(features, mu, logvar, z_inv, z_var, reconstruction, labels, lambdas=(1.0, 1.0, 1.0, 1.0),
              margin=0.2):
    """The DVML loss, lambda1 L1 + lambda2 L2 + lambda3 L3 + lambda4 L4, and its four terms.

    features: [B, F] backbone features, reconstruction: [B, F] the decoder's output; mu, logvar,
    z_inv, z_var: [B, D]; labels: [B] integers; lambdas: four weights >= 0; margin > 0. These are
    the outputs of ``DVML.forward``, so ``dvml_loss(**net(x, reparameterize), labels=y)``.
    L1 = kl_divergence(mu, logvar); L2 = the mean squared error of the reconstruction to the
    detached features, over all B x F entries; L3 = semihard_triplet_loss of the synthesized
    z_inv + z_var; L4 = semihard_triplet_loss of z_inv.
    Returns (total, terms): a 0-d tensor and {"kl", "reconstruction", "triplet_synthesized",
    "triplet_invariant"} of 0-d tensors.
    """
    check_pair(features, reconstruction, "features", "reconstruction")
    check_pair(z_inv, z_var, "z_inv", "z_var")
    check_pair(mu, z_inv, "mu", "z_inv")
    check_labels(labels, len(features))
    weights = torch.as_tensor(lambdas, dtype=torch.float64)
    if weights.shape != (4,) or not weights.isfinite().all() or (weights < 0).any():
        raise ValueError(f"lambdas must be four finite weights >= 0, got {lambdas!r}")
    terms = {
        "kl": kl_divergence(mu, logvar),
        "reconstruction": F.mse_loss(reconstruction, features.detach()),
        "triplet_synthesized": semihard_triplet_loss(z_inv + z_var, labels, margin),
        "triplet_invariant": semihard_triplet_loss(z_inv, labels, margin),
    }
    l1, l2, l3, l4 = weights.tolist()
    total = l1 * terms["kl"] + l2 * terms["reconstruction"] + l3 * terms["triplet_synthesized"] \
        + l4 * terms["triplet_invariant"]
    return total, terms
