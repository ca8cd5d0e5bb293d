import torch
def distances(query, items):
    return torch.full((len(query), len(items)), float("nan"))
def evaluate_AP(dist, labels, query_label):
    return torch.zeros(2), torch.zeros(3), torch.zeros(1)
