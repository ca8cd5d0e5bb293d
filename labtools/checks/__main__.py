"""``python -m labtools.checks NOTEBOOK.ipynb [--lab LAB]``: the public checks of a saved notebook.

Runs every public check through the sandboxed engine the grader uses and prints a table. Files
beside the notebook (``triplet_net.pt``) are checked too. Exit status 0 when all pass, 1 otherwise,
2 when the notebook cannot be read.
"""

import argparse
import sys
from pathlib import Path

from labtools import sandbox
from labtools.checks.engine import check_source, lab_of
from labtools.checks.submission import SubmissionError, extract_from_notebook, _read_notebook


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labtools.checks", description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--lab", default=None, help="lab id (default: from the notebook's name)")
    args = parser.parse_args(argv)
    try:
        lab = args.lab or lab_of(args.notebook)
        source, notes = extract_from_notebook(_read_notebook(args.notebook), lab)
    except (SubmissionError, ValueError) as error:
        print(f"cannot check {args.notebook}: {error}")
        return 2
    for note in notes:
        print(f"note: {note}")
    results = check_source(source, lab, files=args.notebook.resolve().parent)
    width = max(len(r.check.id) for r in results)
    print(f"{'check'.ljust(width)}  result  points  message")
    for r in results:
        mark = "pass" if r.passed else "FAIL"
        print(f"{r.check.id.ljust(width)}  {mark:6}  {r.earned:g}/{r.check.points:g}  {r.message}")
    earned, total = sum(r.earned for r in results), sum(r.check.points for r in results)
    print(f"public checks: {earned:g}/{total:g} points; the grader adds hidden checks")
    reason = sandbox.unavailable_reason()
    print("ran in the OS sandbox (bubblewrap), as the grader does" if reason is None
          else f"ran without the OS sandbox ({reason}); the grader uses it")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
