"""Lab 1's typical mistakes, and the checks each must lose (see ``Mistake`` in tests/submissions/build.py)."""

from build import Mistake

#: The checks of evaluate_AP's values, and those of evaluate_mAP, which calls evaluate_AP.
AP_VALUES = {f"evaluate_AP.{c}" for c in ("perfect_ranking", "hand_example", "hidden_fixed", "hidden_random")}
MAP = {"evaluate_mAP.shapes", "evaluate_mAP.hidden_fixed", "evaluate_mAP.hidden_classifier"}

MISTAKES = {
    # the precision at rank k divided by k - 1 (ranks counted from 0)
    "ap_off_by_one": Mistake(
        lost=AP_VALUES | MAP,
        rewrite="""\
import torch
def evaluate_AP(dist, labels, query_label):
    order = torch.argsort(dist, stable=True)
    relevant = (labels[order] == query_label).to(torch.float64)
    hits = torch.cumsum(relevant, dim=0)
    precision = hits / torch.arange(0, len(relevant), dtype=torch.float64).clamp_min(1)
    recall = hits / relevant.sum().clamp_min(1.0)
    return (precision * relevant).sum() / relevant.sum().clamp_min(1.0), precision, recall
"""),
    # only evaluate_AP's hidden inputs have exact ties (evaluate_mAP's features do not)
    "ap_ties_reversed": Mistake(
        lost={"evaluate_AP.hidden_fixed", "evaluate_AP.hidden_random"},
        rewrite="""\
import torch


def evaluate_AP(dist, labels, query_label):
    # Items at equal distance ranked in reverse order (sorted by decreasing distance, then flipped):
    # the lab asks to keep their order (a stable sort). Only distances with ties see it.
    order = torch.argsort(dist, descending=True, stable=True).flip(0)
    relevant = (labels[order] == query_label).to(torch.float64)
    hits = torch.cumsum(relevant, dim=0)
    precision = hits / torch.arange(1, len(relevant) + 1, dtype=torch.float64)
    recall = hits / relevant.sum().clamp_min(1.0)
    return (precision * relevant).sum() / relevant.sum().clamp_min(1.0), precision, recall
"""),
    "distances_loop": Mistake(
        lost={"distances.vectorized"}, right_values=True,
        rewrite="""\
import torch
def distances(query, items):
    out = torch.zeros(len(query), len(items))
    for i in range(len(query)):
        for j in range(len(items)):
            out[i, j] = ((query[i] - items[j]) ** 2).sum()
    return out
"""),
    # the query among the items it ranks: its own first hit
    "map_query_included": Mistake(
        lost=MAP,
        rewrite="""\
import torch
from labtools.models import extract_features
def evaluate_mAP(net, dataset, num_queries=100):
    images, labels = dataset.tensors
    features = extract_features(net, images, progress=False)
    dist = distances(features[:num_queries], features)
    aps, precisions, recalls = [], [], []
    for q in range(num_queries):
        ap, precision, recall = evaluate_AP(dist[q], labels, labels[q])
        aps.append(ap); precisions.append(precision); recalls.append(recall)
    return torch.stack(aps).mean().item(), torch.stack(precisions).mean(0), torch.stack(recalls).mean(0)
"""),
}
