import torch


def smooth_ap_loss(features, labels, tau=0.01):
    # Right values, but a [B, B, B] tensor (query, i, j), as in the paper's official code.
    b = len(labels)
    sim = features @ features.T
    eye = torch.eye(b, dtype=torch.bool, device=labels.device)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    above = torch.sigmoid((sim[:, None, :] - sim[:, :, None]) / tau)
    others = ~eye[None, :, :] & ~eye[:, None, :]
    rank_all = 1 + (above * others).sum(dim=2)
    rank_pos = 1 + (above * (others & positive[:, None, :])).sum(dim=2)
    count = positive.sum(dim=1)
    ap = (positive * rank_pos / rank_all).sum(dim=1) / count.clamp_min(1)
    has = count > 0
    return ((1 - ap) * has).sum() / has.sum().clamp_min(1)
