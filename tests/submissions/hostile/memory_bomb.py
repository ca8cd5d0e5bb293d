import torch
def distances(query, items):
    hog = torch.ones(1 << 36)
    return hog
