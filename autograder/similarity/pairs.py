"""Which pairs of students share a function: the k-grams two versions of it have in common.

For each function, every student's k-grams (:mod:`autograder.similarity.functions`) less those of
the released skeleton and less those that more than half of the class holds (in a class of
:data:`COMMON_MIN_CLASS` or more: a formula from the lecture, code posted to everyone) are counted
for all pairs at once (a students x k-grams matrix times its transpose). A pair's score is the
share of the smaller version's k-grams that the other version also holds: a copy padded with
extra code scores as high as a bare one. A pair is flagged when the score reaches
:data:`FLAG_SCORE` and the shared k-grams cover at least :data:`MIN_MATCHED_LINES` lines on both
sides: one or two lines in common are an idiom, not evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autograder.similarity.functions import Function

#: The score from which a pair is flagged: the share of the smaller version's k-grams found in the other.
FLAG_SCORE = 0.8
#: The fewest lines the shared k-grams must cover on each side for a pair to be flagged.
MIN_MATCHED_LINES = 3
#: From this many versions of a function on, a k-gram more than half of them hold is common, not evidence.
COMMON_MIN_CLASS = 10
#: Columns of the students x k-grams matrix multiplied at a time (bounds its memory).
_CHUNK = 8192


@dataclass(frozen=True)
class CodeMatch:
    """Two students' versions of one function that share k-grams.

    ``lines_a`` and ``lines_b``: indexes into each version's :attr:`Function.lines` that the
    shared k-grams cover; ``score`` in (0, 1].
    """

    student_a: str
    student_b: str
    function: str
    score: float
    lines_a: tuple[int, ...]
    lines_b: tuple[int, ...]

    @property
    def flagged(self) -> bool:
        return self.score >= FLAG_SCORE and min(len(self.lines_a), len(self.lines_b)) >= MIN_MATCHED_LINES


def code_matches(versions: dict[str, Function], skeleton: set[tuple[str, ...]]) -> tuple[list[CodeMatch], int]:
    """``(matches, common)`` for one function: every pair of students (``versions`` maps each to
    their version) that shares a k-gram beyond ``skeleton`` and the common ones, highest score
    first; ``common``: how many k-grams were taken as common to the class."""
    students = sorted(versions)
    kept = [set(versions[s].grams) - skeleton for s in students]
    columns: dict[tuple[str, ...], int] = {}
    holders: list[int] = []
    for grams in kept:
        for gram in grams:
            column = columns.setdefault(gram, len(columns))
            if column == len(holders):
                holders.append(0)
            holders[column] += 1
    common = set()
    if len(students) >= COMMON_MIN_CLASS:
        common = {gram for gram, column in columns.items() if holders[column] * 2 > len(students)}
        kept = [grams - common for grams in kept]
    shared = _shared_counts([sorted(columns[g] for g in grams) for grams in kept], len(columns))
    sizes = np.array([len(grams) for grams in kept])
    matches = []
    for a, b in zip(*np.nonzero(np.triu(shared, k=1))):
        both = kept[a] & kept[b]
        fa, fb = versions[students[a]], versions[students[b]]
        matches.append(CodeMatch(students[a], students[b], fa.name, float(shared[a, b] / min(sizes[a], sizes[b])),
                                 tuple(sorted(set().union(*(fa.grams[g] for g in both)))),
                                 tuple(sorted(set().union(*(fb.grams[g] for g in both))))))
    matches.sort(key=lambda m: (-m.score, m.student_a, m.student_b))
    return matches, len(common)


def _shared_counts(rows: list[list[int]], width: int) -> np.ndarray:
    """``[n, n]`` counts of the columns each two of the ``n`` sorted column lists ``rows`` share."""
    counts = np.zeros((len(rows), len(rows)), dtype=np.float64)
    arrays = [np.asarray(r, dtype=np.int64) for r in rows]
    for start in range(0, width, _CHUNK):
        block = np.zeros((len(rows), min(_CHUNK, width - start)), dtype=np.float32)
        for i, columns in enumerate(arrays):
            lo, hi = np.searchsorted(columns, [start, start + _CHUNK])
            block[i, columns[lo:hi] - start] = 1.0
        counts += block @ block.T
    return counts
