"""Lab 4 reference: retrieval and clustering metrics, the NormSoftmax head and loss, ArcFace, and
the similarity maps of an embedding pair.

Distances are squared Euclidean between L2-normalized rows (Lab 1's ``distances``). Every function
is loop-free over the data; ``kmeans`` loops over its seeding steps and iterations only.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

from autograder.labs.lab1_retrieval.reference import distances
from labtools.explain import last_conv, recorded_outputs
from labtools.validate import check_features, check_images, check_labels, check_weights


def recall_at_k(features, labels, ks=(1, 2, 4, 8, 16, 32)):
    """Recall@K for every K in ks, leave-one-out on one set of N items.

    features: [N, D] L2-normalized rows, labels: [N] integers, ks: integers in 1..N-1. Every item
    is a query against the N - 1 others; it is a hit at K when one of its K nearest others has
    its label, that is when its rank r = 1 + (number of others strictly closer than its nearest
    positive) is <= K (items tied with the nearest positive do not push it down). Queries whose
    label no other item has cannot be hit and are left out, as in pytorch-metric-learning.
    Returns {K: fraction of the queries hit at K}, a float per K.
    """
    check_features(features, unit=True)
    check_labels(labels, len(features))
    k = torch.as_tensor(ks)
    if k.ndim != 1 or len(k) == 0 or k.is_floating_point() or (k < 1).any() or (k > len(labels) - 1).any():
        raise ValueError(f"ks must be a non-empty sequence of integers in 1..{len(labels) - 1}, got {ks}")
    dist = distances(features, features)  # [N, N]
    dist.fill_diagonal_(math.inf)  # a query is not its own neighbour
    same = labels[:, None] == labels[None, :]
    nearest_positive = dist.masked_fill(~same, math.inf).min(dim=1).values  # [N]
    has_positive = nearest_positive.isfinite()
    if not has_positive.any():
        raise ValueError("no item shares its label with another: Recall@K is undefined")
    rank = 1 + (dist < nearest_positive[:, None]).sum(dim=1)  # [N]
    hit = rank[has_positive, None] <= k.to(rank.device)[None, :]  # [M, len(ks)]
    return dict(zip(k.tolist(), hit.double().mean(dim=0).tolist()))


def precision_at_1(query_features, query_labels, ref_features, ref_labels, n=1):
    """Accuracy of nearest-neighbour classification of the queries against a reference set.

    query_features: [Q, D], ref_features: [R, D] L2-normalized rows; query_labels: [Q],
    ref_labels: [R] integers; 1 <= n <= R. Each query takes the majority label of its n nearest
    references (n = 1: of the nearest; references at equal distances in torch.topk's order); a
    tie between labels goes to the one whose first reference is nearest. Every reference is a
    candidate (the training set: nothing is left out). Returns the fraction of queries whose
    predicted label is theirs, a float.
    """
    check_features(query_features, "query_features", unit=True)
    check_features(ref_features, "ref_features", unit=True)
    check_labels(query_labels, len(query_features), "query_labels")
    check_labels(ref_labels, len(ref_features), "ref_labels")
    if query_features.shape[1] != ref_features.shape[1]:
        raise ValueError(f"query and reference features differ in dimension: {query_features.shape[1]} "
                         f"and {ref_features.shape[1]}")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(ref_labels):
        raise ValueError(f"n must be an integer in 1..{len(ref_labels)}, got {n!r}")
    dist = distances(query_features, ref_features)  # [Q, R]
    neighbours = dist.topk(n, dim=1, largest=False).indices  # [Q, n], nearest first
    votes = ref_labels[neighbours]  # [Q, n]
    count = (votes[:, :, None] == votes[:, None, :]).sum(dim=2)  # [Q, n]: votes for neighbour j's label
    winner = count.argmax(dim=1, keepdim=True)  # the first (nearest) neighbour of a most-voted label
    predicted = votes.gather(1, winner).squeeze(1)  # [Q]
    return (predicted == query_labels).double().mean().item()


def kmeans(features, num_clusters, seed=0, iterations=100):
    """k-means in squared Euclidean distance, seeded by k-means++.

    features: [N, D] floats, 1 <= num_clusters <= the number of distinct rows. Seeding: the first
    center is a row drawn uniformly, each next one a row drawn with probability proportional to
    its squared distance to the nearest center so far, from a generator seeded with ``seed`` on
    the features' device. Then at most ``iterations`` Lloyd steps: assign every row to its
    nearest center (the first on ties), move each center to the mean of its rows (a center
    without rows stays), until no assignment changes.
    Returns the assignments, an int64 [N] tensor of values in 0..num_clusters-1.
    """
    check_features(features)
    distinct = len(features.unique(dim=0))
    if isinstance(num_clusters, bool) or not isinstance(num_clusters, int) or not 1 <= num_clusters <= distinct:
        raise ValueError(f"num_clusters must be an integer in 1..{distinct} (the distinct rows), got {num_clusters!r}")
    generator = torch.Generator(device=features.device).manual_seed(seed)
    first = torch.randint(len(features), (1,), generator=generator, device=features.device)
    centers = features[first]  # [1, D]
    closest = (features - centers).square().sum(dim=1)  # [N]: squared distance to the nearest center
    for _ in range(num_clusters - 1):
        pick = torch.multinomial(closest, 1, generator=generator)
        centers = torch.cat([centers, features[pick]])
        closest = torch.minimum(closest, (features - features[pick]).square().sum(dim=1))
    assignments = torch.full((len(features),), -1, device=features.device)
    for _ in range(iterations):
        previous, assignments = assignments, torch.cdist(features, centers).argmin(dim=1)  # [N]
        if torch.equal(assignments, previous):
            break
        members = F.one_hot(assignments, num_clusters).to(features.dtype)  # [N, K]
        count = members.sum(dim=0)[:, None]  # [K, 1]
        centers = torch.where(count > 0, members.T @ features / count.clamp_min(1), centers)  # [K, D]
    return assignments


def contingency_table(features, labels, num_clusters=None, seed=0):
    """The k-means clusters of the features against the labels, counted.

    features: [N, D] floats, labels: [N] integers; num_clusters defaults to the number of distinct
    labels C. Returns an int64 [C, K] tensor: entry [i, j] counts the items of the i-th smallest
    label that ``kmeans(features, K, seed)`` puts in cluster j.
    """
    check_features(features)
    check_labels(labels, len(features))
    classes, label_index = labels.unique(return_inverse=True)
    num_clusters = len(classes) if num_clusters is None else num_clusters
    clusters = kmeans(features, num_clusters, seed)
    cell = label_index * num_clusters + clusters  # [N]: flat index of (label, cluster)
    return torch.bincount(cell, minlength=len(classes) * num_clusters).view(len(classes), num_clusters)


def nmi(features, labels, num_clusters=None, seed=0):
    """Normalized mutual information between the labels and the k-means clusters of the features.

    features: [N, D] floats, labels: [N] integers; num_clusters (default: the number of distinct
    labels) and seed go to ``kmeans``. NMI = I(Y; C) / ((H(Y) + H(C)) / 2), natural logarithms,
    the arithmetic-mean normalization of scikit-learn's default; 1.0 when both partitions have a
    single part. Returns a float in [0, 1].
    """
    joint = contingency_table(features, labels, num_clusters, seed).double() / len(labels)  # [C, K]
    h_labels = -torch.xlogy(joint.sum(dim=1), joint.sum(dim=1)).sum()
    h_clusters = -torch.xlogy(joint.sum(dim=0), joint.sum(dim=0)).sum()
    h_joint = -torch.xlogy(joint, joint).sum()
    if h_labels + h_clusters == 0:
        return 1.0
    mutual_information = (h_labels + h_clusters - h_joint).clamp_min(0)
    return (mutual_information / ((h_labels + h_clusters) / 2)).item()


def f1(features, labels, num_clusters=None, seed=0):
    """Pairwise F1 of the k-means clusters of the features against the labels.

    features: [N, D] floats, labels: [N] integers; num_clusters (default: the number of distinct
    labels) and seed go to ``kmeans``. Over the N(N-1)/2 pairs of items: precision = pairs in one
    cluster with one label / pairs in one cluster, recall = the same / pairs with one label,
    F1 = 2 precision recall / (precision + recall) = 2 both / (same cluster + same label);
    1.0 when no pair shares a cluster or a label. Returns a float in [0, 1].
    """
    table = contingency_table(features, labels, num_clusters, seed).double()  # [C, K]
    both = (table * (table - 1) / 2).sum()
    same_label = (table.sum(dim=1) * (table.sum(dim=1) - 1) / 2).sum()
    same_cluster = (table.sum(dim=0) * (table.sum(dim=0) - 1) / 2).sum()
    if same_label + same_cluster == 0:
        return 1.0
    return (2 * both / (same_label + same_cluster)).item()


class NormSoftmax(nn.Module):
    """NormSoftmax head (Zhai & Wu, BMVC 2019): normalized embedding and class weights.

    in_features: the backbone's output size (256 for ``ConvNet.embed``), num_classes: C,
    embedding_dim: D, by default in_features with no projection. ``forward(x)`` maps the
    backbone output [B, in_features] to the embedding [B, D]: layer normalization without
    learned parameters, the linear projection when embedding_dim is given, L2 normalization.
    ``weight`` [C, D] holds one bias-free class weight per row, used by ``norm_softmax_loss``
    with the head's ``temperature``.
    """

    def __init__(self, in_features, num_classes, embedding_dim=None, temperature=0.05):
        super().__init__()
        self.project = nn.Identity() if embedding_dim is None else nn.Linear(in_features, embedding_dim)
        dim = in_features if embedding_dim is None else embedding_dim
        self.weight = nn.Parameter(torch.randn(num_classes, dim))
        self.temperature = temperature

    def forward(self, x):
        x = F.layer_norm(x, x.shape[-1:])
        return F.normalize(self.project(x), dim=1)


def norm_softmax_loss(features, labels, weight, temperature=0.05):
    """NormSoftmax loss: cross-entropy of cosine logits divided by a temperature.

    features: [B, D], labels: [B] in 0..C-1, weight: [C, D] class weights; both normalized here.
    logits[b, c] = <f_b, w_c> / temperature. Returns the mean cross-entropy, a 0-d tensor.
    """
    check_features(features)
    check_weights(weight, features.shape[1])
    check_labels(labels, len(features), num_classes=len(weight))
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = F.normalize(features, dim=1) @ F.normalize(weight, dim=1).T / temperature  # [B, C]
    return F.cross_entropy(logits, labels)


def arcface_loss(features, labels, weight, margin=0.5, scale=64.0):
    """ArcFace loss (Deng et al., CVPR 2019): an additive angular margin on the true class.

    features: [B, D], labels: [B] in 0..C-1, weight: [C, D] class weights; both normalized here.
    margin in radians (0.5 rad = 28.6 degrees), 0 <= margin < pi/2. With theta the angle between
    f_b and the true class's weight, the true logit is scale * cos(theta + margin) while
    theta <= pi - margin, else scale * (cos(theta) - margin sin(margin)) so that it keeps
    decreasing; every other logit is scale * cos. Returns the mean cross-entropy, a 0-d tensor.
    """
    check_features(features)
    check_weights(weight, features.shape[1])
    check_labels(labels, len(features), num_classes=len(weight))
    if not 0 <= margin < math.pi / 2 or not scale > 0:
        raise ValueError(f"margin must be in [0, pi/2) radians and scale positive, got {margin}, {scale}")
    cos = F.normalize(features, dim=1) @ F.normalize(weight, dim=1).T  # [B, C]
    true_cos = cos.gather(1, labels[:, None])  # [B, 1]
    theta = torch.acos(true_cos.clamp(-1, 1))
    true_logit = torch.where(theta <= math.pi - margin, torch.cos(theta + margin), true_cos - margin * math.sin(margin))
    logits = cos.scatter(1, labels[:, None], true_logit)  # [B, C]
    return F.cross_entropy(scale * logits, labels)


def similarity_maps(net, query, retrieved):
    """Where the similarity of a query and a retrieved image comes from, on each side of the pair.

    net: a network with an embedding ``net.features(images) -> [B, D]`` and convolutions; the maps
    A ``[2B, K, h, w]`` are the outputs of its last ``nn.Conv2d`` (``labtools.explain.last_conv``,
    recorded by ``labtools.explain.recorded_outputs``) for both sides run in one batch. query,
    retrieved: images ``[B, 1, H, W]``, pair b = (query[b], retrieved[b]). With s_b the cosine
    similarity of the pair's embeddings, each side's map is Grad-CAM's weighting of its maps by the
    mean gradient of s_b over each of them, ``ReLU(sum_k mean_ij(ds_b/dA_kij) A_k)``, upsampled
    bilinearly from h x w to H x W. The network runs in eval mode (its training flag restored),
    gradients enabled, on its device. Returns ``(query_maps [B, H, W], retrieved_maps [B, H, W])``:
    float32, non-negative, on the CPU.
    """
    check_images(query, "query")
    check_images(retrieved, "retrieved")
    if query.shape != retrieved.shape:
        raise ValueError(f"query and retrieved must have the same shape [B, 1, H, W] (one retrieved image per "
                         f"query), got {list(query.shape)} and {list(retrieved.shape)}")
    if not hasattr(net, "features"):
        raise ValueError(f"{type(net).__name__} has no features method: similarity_maps explains an embedding "
                         "net.features(images) -> [B, D]")
    layer, count = last_conv(net), len(query)
    # the images require a gradient, so that the maps do even if the network's parameters don't
    both = torch.cat([query, retrieved]).detach().to(layer.weight.device).requires_grad_(True)  # [2B, 1, H, W]
    was_training = net.training
    net.eval()
    try:
        with torch.enable_grad(), recorded_outputs(layer) as outputs:
            features = F.normalize(net.features(both), dim=1)  # [2B, D]
            similarity = (features[:count] * features[count:]).sum(dim=1)  # [B]
            maps = outputs[-1]  # [2B, K, h, w]
            (gradient,) = torch.autograd.grad(similarity.sum(), maps)
    finally:
        net.train(was_training)
    weights = gradient.mean(dim=(2, 3), keepdim=True)  # [2B, K, 1, 1]
    cams = F.relu((weights * maps).sum(dim=1, keepdim=True))  # [2B, 1, h, w]
    cams = F.interpolate(cams, size=query.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    cams = cams.detach().float().cpu()
    return cams[:count], cams[count:]
