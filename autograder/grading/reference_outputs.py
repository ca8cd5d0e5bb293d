"""``python -m autograder.grading.reference_outputs [LAB ...]``: write the stored outputs of the hidden checks
(of every lab, or of the labs named).

For the fixed inputs of every value check a lab declares (:func:`autograder.grading.hidden.declarations`),
the output of ``autograder.labs.<lab>.reference`` is saved with the input in
``autograder/labs/<lab>/reference_outputs.pt`` (plain data, ``weights_only``-loadable).
``tests/test_grading_reference_outputs.py`` checks that the stored outputs still match the reference module.
"""

import sys

import torch

from autograder.grading.hidden import declarations, outputs_path, reference_output
from labtools.labs import lab_ids


def plain(output):
    if isinstance(output, tuple):
        return [plain(o) for o in output]
    if isinstance(output, dict):
        return {k: plain(v) for k, v in output.items()}
    if isinstance(output, torch.Tensor):
        return output.detach().cpu().clone()
    return output


def entry(function: str, args, kwargs) -> dict:
    return {"args": list(args), "kwargs": dict(kwargs), "output": plain(reference_output(function, args, kwargs))}


def compute(labs=None) -> dict[str, dict]:
    """``{lab: {function: {"args", "kwargs", "output"}}}`` of every lab (or of ``labs``) that declares value checks."""
    return {lab: {values.function: entry(values.function, *values.fixed_inputs()) for values in declarations(lab)}
            for lab in (labs or lab_ids()) if declarations(lab)}


def main(argv=None) -> int:
    labs = sys.argv[1:] if argv is None else argv
    unknown = sorted(set(labs) - set(lab_ids()))
    if unknown:
        print(f"unknown labs {unknown}; the labs are {', '.join(lab_ids())}", file=sys.stderr)
        return 2
    for lab, record in compute(labs).items():
        torch.save(record, outputs_path(lab))
        print(f"wrote {outputs_path(lab)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
