"""Lab 3 reference: the Smooth-AP loss (Brown et al., ECCV 2020)."""

import torch


def smooth_ap_loss(features, labels, tau=0.01):
    """Smooth-AP loss of a batch: the mean over queries of 1 - (smoothed average precision).

    features: [B, D] L2-normalized rows, labels: [B] integers, tau > 0 the sigmoid temperature.
    Every row q is a query ranked against the B - 1 other rows by cosine similarity
    s_j = <f_q, f_j> (the query itself is excluded). With P the positives of q (its label, q
    excluded), N the other rows, D_ij = s_j - s_i and G(x) = sigmoid(x / tau):

        AP_q = 1/|P| sum_{i in P} (1 + sum_{j in P, j != i} G(D_ij))
                                 / (1 + sum_{j in P u N, j != i} G(D_ij))

    Only the positives of each query need a rank: they are gathered into M columns, M the
    largest number of positives of a query (M = K - 1 for batches of K images per class), queries
    with fewer positives padded and masked. Tensors are [B, M, B], never [B, B, B].
    Returns a 0-d tensor: the mean of 1 - AP_q over the queries with at least one positive
    (0 when no query has one).
    """
    if not isinstance(features, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ValueError(f"features and labels must be tensors, got {type(features).__name__}, {type(labels).__name__}")
    if features.ndim != 2 or len(features) == 0 or not features.is_floating_point():
        raise ValueError(f"features must be a float [B, D] tensor, B >= 1, got {features.dtype} {list(features.shape)}")
    if labels.shape != features.shape[:1] or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer [{len(features)}] tensor, got {labels.dtype} {list(labels.shape)}")
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    index = torch.arange(len(labels), device=labels.device)
    sim = features @ features.T  # [B, B]: s[q, j] = <f_q, f_j>
    not_query = index[None, :] != index[:, None]  # [B, B]: j != q
    positive = (labels[:, None] == labels[None, :]) & not_query  # [B, B]: j in P of query q
    m = int(positive.sum(dim=1).max())
    # The indices of each query's positives, first in its row, padded with other rows to M columns:
    valid, pos_index = positive.to(sim.dtype).topk(m, dim=1)  # [B, M]: 1 for a positive, 0 for padding
    s_pos = sim.gather(1, pos_index)  # [B, M]: s_i of the positive i
    above = torch.sigmoid((sim[:, None, :] - s_pos[:, :, None]) / tau)  # [B, M, B]: G(D_ij) = G(s_j - s_i)
    others = not_query[:, None, :] & (index[None, None, :] != pos_index[:, :, None])  # [B, M, B]: j != q, j != i
    rank_all = 1 + (above * others).sum(dim=2)  # [B, M]: smoothed rank of i among all items
    rank_pos = 1 + (above * (others & positive[:, None, :])).sum(dim=2)  # [B, M]: ... among the positives
    count = valid.sum(dim=1)  # [B]: |P|
    ap = (valid * rank_pos / rank_all).sum(dim=1) / count.clamp_min(1)  # [B]
    has_positive = count > 0
    return ((1 - ap) * has_positive).sum() / has_positive.sum().clamp_min(1)
