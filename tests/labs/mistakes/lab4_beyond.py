"""Lab 4's typical mistakes, and the checks each must lose (see ``Mistake`` in tests/submissions/build.py)."""

from build import Mistake

RECALL_VALUES = {f"recall_at_k.{c}" for c in ("hand_example", "leave_one_out", "singletons", "hidden_fixed",
                                               "hidden_random")}

MISTAKES = {
    # the query is its own nearest neighbour: every Recall@K is 1
    "recall_query_included": Mistake(
        lost=RECALL_VALUES,
        edits=[("dist.fill_diagonal_(math.inf)  # a query is not its own neighbour", "")]),
    # items tied with the nearest positive push it down (the hidden inputs have exact ties)
    "recall_ties_count_against": Mistake(
        lost={"recall_at_k.hand_example", "recall_at_k.hidden_fixed", "recall_at_k.hidden_random"},
        edits=[("rank = 1 + (dist < nearest_positive[:, None]).sum(dim=1)",
                "rank = 1 + (dist < nearest_positive[:, None]).sum(dim=1)"
                " + ((dist == nearest_positive[:, None]) & ~same).sum(dim=1)")]),
    "recall_loop": Mistake(
        lost={"recall_at_k.vectorized"}, right_values=True,
        rewrite="""\
import math

import torch


def recall_at_k(features, labels, ks=(1, 2, 4, 8, 16, 32)):
    # Right values, but a Python loop over the queries (the checks want tensor operations).
    hits = {k: [] for k in ks}
    for q in range(len(labels)):
        dist = 2 - 2 * features @ features[q]
        dist[q] = math.inf
        positive = labels == labels[q]
        positive[q] = False
        if not positive.any():
            continue
        rank = 1 + int((dist < dist[positive].min()).sum())
        for k in ks:
            hits[k].append(rank <= k)
    return {k: sum(found) / len(found) for k, found in hits.items()}
"""),
    # NMI normalized by the larger entropy: the public examples have equal entropies, only the hidden checks see it
    "nmi_max_normalization": Mistake(
        lost={"nmi.hidden_fixed", "nmi.hidden_random"},
        edits=[("(mutual_information / ((h_labels + h_clusters) / 2))",
                "(mutual_information / torch.maximum(h_labels, h_clusters))")]),
    # F1 over ordered pairs, each item also paired with itself (perfect clusters still give F1 = 1)
    "f1_ordered_pairs": Mistake(
        lost={"f1.mixed", "f1.hand_example", "f1.hidden_fixed", "f1.hidden_random"},
        edits=[("both = (table * (table - 1) / 2).sum()", "both = (table * table).sum()"),
               ("(table.sum(dim=1) * (table.sum(dim=1) - 1) / 2).sum()", "(table.sum(dim=1) ** 2).sum()"),
               ("(table.sum(dim=0) * (table.sum(dim=0) - 1) / 2).sum()", "(table.sum(dim=0) ** 2).sum()")]),
    # the head L2-normalizes without layer-normalizing first
    "head_without_layer_norm": Mistake(
        lost={"NormSoftmax.layer_norm", "NormSoftmax.hidden_random"},
        edits=[("x = F.layer_norm(x, x.shape[-1:])", "pass")]),
    "head_with_learned_layer_norm": Mistake(
        lost={"NormSoftmax.layer_norm", "NormSoftmax.hidden_random"},
        edits=[("x = F.layer_norm(x, x.shape[-1:])", "x = F.normalize(x, dim=1) * 4")]),
    # the logits are the bare cosines (the normalization check runs at temperature 1, where this changes nothing)
    "temperature_ignored": Mistake(
        lost={"norm_softmax_loss.hand_example", "norm_softmax_loss.hidden_fixed", "norm_softmax_loss.hidden_random"},
        edits=[(".T / temperature  # [B, C]", ".T  # [B, C]")]),
    # the angular margin on every class, not only the true one (margin 0 is right whatever gets it)
    "arcface_margin_on_every_class": Mistake(
        lost={"arcface_loss.hand_example", "arcface_loss.hidden_fixed", "arcface_loss.hidden_random"},
        edits=[("logits = cos.scatter(1, labels[:, None], true_logit)",
                "logits = torch.cos(torch.acos(cos.clamp(-1, 1)) + margin)")]),
    "arcface_margin_on_the_cosine": Mistake(
        lost={"arcface_loss.hand_example", "arcface_loss.hidden_fixed", "arcface_loss.hidden_random"},
        edits=[("torch.cos(theta + margin)", "true_cos - margin")]),
    # every activation weighted by its own gradient, not each map by its mean gradient (still symmetric)
    "similarity_gradient_not_averaged": Mistake(
        lost={"similarity_maps.hidden_fixed", "similarity_maps.hidden_random"},
        edits=[("weights = gradient.mean(dim=(2, 3), keepdim=True)  # [2B, K, 1, 1]",
                "weights = gradient  # [2B, K, h, w]")]),
    # the retrieved side detached: the similarity has no gradient there, its maps are all zero
    "similarity_one_sided": Mistake(
        lost={"similarity_maps.shapes", "similarity_maps.symmetry", "similarity_maps.hidden_fixed",
              "similarity_maps.hidden_random"},
        edits=[("similarity = (features[:count] * features[count:]).sum(dim=1)  # [B]",
                "similarity = (features[:count] * features[count:].detach()).sum(dim=1)  # [B]")]),
}
