import torch
def evaluate_AP(dist, labels, query_label):
    order = torch.argsort(dist, stable=True)
    relevant = (labels[order] == query_label).to(torch.float64)
    hits = torch.cumsum(relevant, dim=0)
    precision = hits / torch.arange(0, len(relevant), dtype=torch.float64).clamp_min(1)
    recall = hits / relevant.sum().clamp_min(1.0)
    return (precision * relevant).sum() / relevant.sum().clamp_min(1.0), precision, recall
