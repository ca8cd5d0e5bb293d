"""``python -m autograder.grading.reference_outputs``: write the stored outputs of the hidden checks.

For every fixed input of :func:`autograder.grading.hidden.fixed_inputs`, the output of
``autograder.labs.<lab>.reference`` is saved with the input in ``autograder/labs/<lab>/reference_outputs.pt``
(plain data, ``weights_only``-loadable). ``tests/test_grading_reference_outputs.py`` checks that
the stored outputs still match the reference module.
"""

import sys

import torch

from autograder.grading.hidden import fixed_inputs, outputs_path, reference_output

LABS = {"lab1_retrieval": ("distances", "evaluate_AP", "evaluate_mAP"), "lab2_triplet": ("triplet_loss",),
        "lab3_smoothap": ("smooth_ap_loss",),
        "lab4_beyond": ("recall_at_k", "nmi", "f1", "norm_softmax_loss", "arcface_loss"),
        "lab5_dvml": ("kl_divergence", "reparameterize", "semihard_triplets", "semihard_triplet_loss", "dvml_loss")}


def plain(output):
    if isinstance(output, tuple):
        return [plain(o) for o in output]
    if isinstance(output, dict):
        return {k: plain(v) for k, v in output.items()}
    if isinstance(output, torch.Tensor):
        return output.detach().cpu().clone()
    return output


def compute() -> dict[str, dict]:
    inputs = fixed_inputs()
    return {lab: {f: {**inputs[f], "output": plain(reference_output(f, inputs[f]["args"], inputs[f]["kwargs"]))}
                  for f in functions} for lab, functions in LABS.items()}


def main() -> int:
    for lab, record in compute().items():
        torch.save(record, outputs_path(lab))
        print(f"wrote {outputs_path(lab)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
