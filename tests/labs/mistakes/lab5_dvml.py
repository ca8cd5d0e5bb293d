"""Lab 5's typical mistakes, and the checks each must lose (see ``Mistake`` in tests/submissions/build.py).

A mistake in a helper also costs the checks of the graded functions that call it: dvml_loss uses the
student's kl_divergence and semihard_triplet_loss, which uses semihard_triplets.
"""

from build import Mistake

KL = {"kl_divergence.hand_example", "kl_divergence.hidden_fixed", "kl_divergence.hidden_random"}
DVML_VALUES = {"dvml_loss.hidden_fixed", "dvml_loss.hidden_random"}
SEMIHARD_LOSS = {"semihard_triplet_loss.hand_example", "semihard_triplet_loss.hidden_fixed",
                 "semihard_triplet_loss.hidden_random", "dvml_loss.triplet_terms"} | DVML_VALUES

MISTAKES = {
    "kl_summed_over_the_batch": Mistake(
        lost=KL | {"dvml_loss.kl_and_reconstruction"} | DVML_VALUES,
        edits=[("(logvar.exp() + mu.square() - 1 - logvar).sum(dim=1).mean()",
                "(logvar.exp() + mu.square() - 1 - logvar).sum()")]),
    "sigma_is_exp_logvar": Mistake(
        lost={"reparameterize.moments", "reparameterize.hidden_fixed"},
        edits=[("return mu + (0.5 * logvar).exp() * eps", "return mu + logvar.exp() * eps")]),
    "hard_negatives_too": Mistake(
        lost={"semihard_triplets.hand_example", "semihard_triplets.margin", "semihard_triplets.hidden_fixed",
              "semihard_triplets.hidden_random"} | SEMIHARD_LOSS,
        edits=[(" & (an > ap) & ", " & ")]),
    # a negative exactly as far as the positive taken as semi-hard: only inputs with exact ties see it
    "semihard_ties_included": Mistake(
        lost={"semihard_triplets.hidden_fixed", "semihard_triplets.hidden_random",
              "semihard_triplet_loss.hidden_fixed", "semihard_triplet_loss.hidden_random"},
        edits=[("(an > ap)", "(an >= ap)")]),
    # a loop in the miner is a loop in the two losses that call it
    "semihard_loop": Mistake(
        lost={f"{f}.vectorized" for f in ("semihard_triplets", "semihard_triplet_loss", "dvml_loss")},
        right_values=True,
        rewrite="""\
import torch
from torch.nn import functional as F


def semihard_triplets(features, labels, margin=0.2):
    # Right triplets, but found by Python loops over anchors, positives and negatives.
    unit = F.normalize(features.detach(), dim=1)
    dist = distances(unit, unit).tolist()  # noqa: F821  (the notebook's Lab 1 function)
    labels = labels.tolist()
    found = []
    for a in range(len(labels)):
        for p in range(len(labels)):
            for n in range(len(labels)):
                if (p != a and labels[p] == labels[a] and labels[n] != labels[a]
                        and dist[a][p] < dist[a][n] < dist[a][p] + margin):
                    found.append((a, p, n))
    if not found:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty, empty
    return tuple(torch.tensor(column) for column in zip(*found))
"""),
    "hinges_summed": Mistake(
        lost=SEMIHARD_LOSS,
        edits=[("return hinge.sum() / max(len(a), 1)", "return hinge.sum()")]),
    "reconstruction_summed": Mistake(
        lost={"dvml_loss.kl_and_reconstruction"} | DVML_VALUES,
        edits=[('"reconstruction": F.mse_loss(reconstruction, features.detach()),',
                '"reconstruction": F.mse_loss(reconstruction, features.detach(), reduction="sum"),')]),
}
