"""Who copied from whom: a similarity report across a class's submissions, on the grader's machine.

``python -m autograder similarity <lab_id> <submissions> [--out DIR]``, and a step of
``python -m autograder grade`` (``--no-similarity`` leaves it out), writes ``DIR/similarity.csv``
(every pair of students and function that shares code beyond the released notebook's, with the
score and the matched lines; every pair of checkpoints with the same or nearly the same weights),
``DIR/similarity.html`` (the flagged pairs side by side, matching lines highlighted) and prints a
summary. It flags; it never changes a grade.

How code is compared (:mod:`.functions`, :mod:`.pairs`): each graded function (with the helpers it
calls) is cut into k-grams of normalized tokens within each statement, so that renamed variables,
reformatting, comments and reordered statements change nothing; the k-grams of the released
notebook's solution cells (stubs, docstrings, provided code) are left out of every submission's,
and so are those that more than half of a class of 10 or more hold. Checkpoints
(:mod:`.weights`) are compared by the weights of the ConvNet's feature layers, with each other's
and with the course's networks, as the grader compares them (:mod:`autograder.labs.lab2_triplet.copies`).

Submissions are untrusted: their notebooks are read as JSON and parsed with ``tokenize`` and
``ast`` only (nothing is run), their checkpoints with ``torch.load(weights_only=True)`` within
size limits, symbolic links are not followed, and a submission that cannot be read gets a note in
the report instead of stopping it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from autograder.paths import RELEASE_DIR
from autograder.similarity.functions import Function, read_functions
from autograder.similarity.pairs import CodeMatch, code_matches
from autograder.similarity.report import summary, write_csv, write_html
from autograder.similarity.weights import (DELIVERABLES, UnreadableCheckpoint, WeightMatch, Weights, course_weights,
                                           read_weights, weight_matches)
from labtools import labs
from labtools.checks.submission import defined_functions, extract_submission


@dataclass
class ClassSimilarity:
    """The comparison of one lab's submissions.

    ``functions``: ``{student: {function: Function}}`` as compared; ``code``: pairs of functions
    sharing code, highest score first; ``weights``: pairs of checkpoints within the near-copy
    distance; ``common``: per function, the k-grams taken as common to the class; ``notes``: per
    student, what could not be compared and why.
    """

    lab: str
    students: list[str]
    checkpoint: str
    functions: dict[str, dict[str, Function]] = field(default_factory=dict)
    code: list[CodeMatch] = field(default_factory=list)
    weights: list[WeightMatch] = field(default_factory=list)
    common: dict[str, int] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)


def compared_functions(release: Path, lab: str) -> tuple[str, ...]:
    """The lab's graded functions, then the other functions the released notebook's solution cells define."""
    released = tuple(defined_functions(extract_submission(release, lab)))
    extracted = labs.lab(lab).extracted
    return extracted + tuple(name for name in released if name not in extracted)


def compare(lab: str, items: list[tuple[str, Path, list[str], Path | None]], release: Path) -> ClassSimilarity:
    """Compare the submissions ``items`` (as :func:`autograder.grading.intake.collect` returns them)
    of ``lab``, whose released notebook is ``release``; checkpoints also with the course's networks."""
    if lab not in labs.lab_ids():
        raise SystemExit(f"unknown lab {lab!r}; expected one of {', '.join(labs.lab_ids())}")
    if not Path(release).is_file():
        raise SystemExit(f"no released notebook {release}: build it with `make notebooks`")
    names = compared_functions(release, lab)
    skeleton_functions, _ = read_functions(release, lab, names)
    skeleton = set().union(*(f.grams for f in skeleton_functions.values()))
    checkpoint = DELIVERABLES.get(lab, "")
    result = ClassSimilarity(lab, sorted(student for student, *_ in items), checkpoint)
    weights: dict[str, Weights] = {}
    for student, folder, collected, notebook in items:
        notes = result.notes.setdefault(student, [])
        if notebook is None:  # collect's last note says why
            notes.append(f"{collected[-1] if collected else 'no notebook found'}: not compared")
        else:
            result.functions[student], found = _student_functions(Path(notebook), lab, names)
            notes += found
        if checkpoint and folder is not None and Path(folder).is_dir():
            path = Path(folder) / checkpoint
            if path.exists() or path.is_symlink():
                try:
                    weights[student] = read_weights(path)
                except UnreadableCheckpoint as error:
                    notes.append(str(error))
    for name in names:
        versions = {s: functions[name] for s, functions in result.functions.items() if name in functions}
        matches, result.common[name] = code_matches(versions, skeleton)
        result.code += matches
    result.code.sort(key=lambda m: (-m.score, m.student_a, m.student_b, names.index(m.function)))
    if checkpoint:
        result.weights = weight_matches(weights, course_weights())
    return result


def _student_functions(notebook: Path, lab: str, names: tuple[str, ...]) -> tuple[dict[str, Function], list[str]]:
    """The functions of one submitted notebook and the notes about it; never raises: the notebook
    is untrusted, and whatever it holds ends in a note."""
    if notebook.is_symlink():
        return {}, [f"{notebook.name} is a symbolic link: not compared"]
    try:
        return read_functions(notebook, lab, names)
    except Exception as error:  # SubmissionError says what is wrong; anything else is named by its type
        reason = str(error) if type(error).__name__ == "SubmissionError" else f"unreadable ({type(error).__name__})"
        return {}, [f"the notebook could not be compared: {reason}"[:300]]


def report(lab: str, items: list[tuple[str, Path, list[str], Path | None]], out: Path,
           release: Path) -> ClassSimilarity:
    """Compare ``items``, write ``out/similarity.csv`` and ``out/similarity.html``, print the summary."""
    result = compare(lab, items, release)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "similarity.csv", result)
    write_html(out / "similarity.html", result)
    print(summary(result, out))
    return result


def similarity(lab: str, submissions: Path, out: Path, release: Path | None = None) -> ClassSimilarity:
    """``python -m autograder similarity``: the submissions read as ``grade`` reads them (a folder,
    nbgrader's ``submitted/``, a zip, an LMS export), compared against ``notebooks/<lab>.ipynb``."""
    from autograder.grading.intake import collect

    if lab not in labs.lab_ids():
        raise SystemExit(f"unknown lab {lab!r}; expected one of {', '.join(labs.lab_ids())}")
    with tempfile.TemporaryDirectory(prefix="similarity-") as scratch:
        items = collect(lab, Path(submissions).resolve(), Path(scratch))
        return report(lab, items, Path(out), release or RELEASE_DIR / f"{lab}.ipynb")
