"""Lab 1 reference: squared Euclidean distances, average precision, mAP of a network."""

import torch

from labtools.models import extract_features


def distances(query, items):
    """Squared Euclidean distances between L2-normalized feature rows.

    query: [Q, D], items: [N, D], both with unit rows. Returns [Q, N] with
    d[q, n] = ||query[q] - items[n]||^2 = 2 - 2 <query[q], items[n]>.
    """
    return (2.0 - 2.0 * torch.einsum("qd,nd->qn", query, items)).clamp_min(0.0)


def evaluate_AP(dist, labels, query_label):
    """Average precision of one query over the full ranking of N items (the query excluded).

    dist: [N] distances from the query to the items, labels: [N] their labels, query_label: the
    query's label (int or 0-d tensor). Items are ranked by increasing distance (ties keep their
    order). Returns (ap, precision, recall): ap is a 0-d tensor, AP = sum_k prec(k) rel(k) / T,
    and precision, recall are [N] tensors, prec(k) and recall(k) for k = 1..N.
    """
    order = torch.argsort(dist, stable=True)
    relevant = (labels[order] == query_label).to(torch.float64)
    hits = torch.cumsum(relevant, dim=0)
    precision = hits / torch.arange(1, len(relevant) + 1, dtype=torch.float64)
    total = relevant.sum().clamp_min(1.0)
    recall = hits / total
    ap = (precision * relevant).sum() / total
    return ap, precision, recall


def evaluate_mAP(net, dataset, num_queries=100):
    """mAP of `net`'s features on `dataset`, the first `num_queries` images as queries.

    dataset: a TensorDataset of images [N, 1, 28, 28] and labels [N]. Each query is ranked
    against the other N - 1 images. Returns (mAP, precision, recall): mAP a float, precision and
    recall [N - 1] tensors, the mean over queries of prec(k) and recall(k): the PR curve.
    """
    images, labels = dataset.tensors
    features = extract_features(net, images)
    dist = distances(features[:num_queries], features)
    everything = torch.arange(len(labels))
    aps, precisions, recalls = [], [], []
    for q in range(num_queries):
        others = everything != q
        ap, precision, recall = evaluate_AP(dist[q, others], labels[others], labels[q])
        aps.append(ap)
        precisions.append(precision)
        recalls.append(recall)
    mean_precision = torch.stack(precisions).mean(dim=0)
    mean_recall = torch.stack(recalls).mean(dim=0)
    return torch.stack(aps).mean().item(), mean_precision, mean_recall
