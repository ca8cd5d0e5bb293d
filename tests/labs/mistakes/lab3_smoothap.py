"""Lab 3's typical mistakes, and the checks each must lose (see ``Mistake`` in tests/submissions/build.py)."""

from build import Mistake

SMOOTH_AP_VALUES = {f"smooth_ap_loss.{c}" for c in ("hand_example", "tau", "query_excluded", "hidden_fixed",
                                                     "hidden_random")}

MISTAKES = {
    "query_included": Mistake(
        lost=SMOOTH_AP_VALUES | {"smooth_ap_loss.range"},
        edits=[("not_query = index[None, :] != index[:, None]",
                "not_query = torch.ones(len(labels), len(labels), dtype=torch.bool, device=labels.device)")]),
    "wrong_sign": Mistake(
        lost=SMOOTH_AP_VALUES | {"smooth_ap_loss.perfect_ranking"},
        edits=[("(sim[:, None, :] - s_pos[:, :, None])", "(s_pos[:, :, None] - sim[:, None, :])")]),
    "tau_ignored": Mistake(
        lost=SMOOTH_AP_VALUES | {"smooth_ap_loss.perfect_ranking"},
        edits=[("/ tau)", ")")]),
    "smoothap_cube": Mistake(
        lost={"smooth_ap_loss.memory"}, right_values=True,
        rewrite="""\
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
"""),
    "smoothap_vmap": Mistake(
        lost={"smooth_ap_loss.memory"}, right_values=True,
        rewrite="""\
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
"""),
}
