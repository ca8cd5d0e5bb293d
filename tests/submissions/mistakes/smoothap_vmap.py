import torch


def smooth_ap_loss(features, labels, tau=0.01):
    # Right values and no loop, but written for one query and vmapped over the queries: each
    # query's [B, B] tensors (i, j) are one [B, B, B] tensor in memory, which the code never names.
    b = len(labels)
    sim = features @ features.T
    eye = torch.eye(b, dtype=torch.bool, device=labels.device)
    positive = (labels[:, None] == labels[None, :]) & ~eye

    def one_query(s, pos, is_query):
        above = torch.sigmoid((s[None, :] - s[:, None]) / tau)  # [i, j]: G(s_j - s_i)
        others = ~eye & ~is_query[None, :]  # j != i, j != q
        rank_all = 1 + (above * others).sum(dim=1)
        rank_pos = 1 + (above * (others & pos[None, :])).sum(dim=1)
        count = pos.sum()
        return (pos * rank_pos / rank_all).sum() / count.clamp_min(1), count

    ap, count = torch.func.vmap(one_query)(sim, positive, eye)
    has = count > 0
    return ((1 - ap) * has).sum() / has.sum().clamp_min(1)
