import torch
def distances(query, items):
    out = torch.zeros(len(query), len(items))
    for i in range(len(query)):
        for j in range(len(items)):
            out[i, j] = ((query[i] - items[j]) ** 2).sum()
    return out
