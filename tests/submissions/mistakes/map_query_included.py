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
