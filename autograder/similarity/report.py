"""What the similarity report writes: ``similarity.csv``, ``similarity.html`` and the printed summary.

Everything from a submission (its code, the names of its functions, the notes about it) is escaped
before it enters the HTML page, and the page allows no script at all (its Content-Security-Policy
allows inline styles only): a student's ``</script>`` or ``<img onerror=...>`` is shown as text.
"""

from __future__ import annotations

import csv
import html
from pathlib import Path

from typing import TYPE_CHECKING

from autograder.similarity.functions import Function
from autograder.similarity.pairs import FLAG_SCORE, MIN_MATCHED_LINES
from autograder.labs.lab2_triplet.copies import NEAR_COPY

if TYPE_CHECKING:
    from autograder.similarity import ClassSimilarity

#: The flagged pairs of functions shown side by side in the HTML page (the CSV has them all).
MAX_SHOWN = 200
#: The flagged pairs named in the printed summary.
MAX_PRINTED = 20
COLUMNS = ["student_a", "student_b", "function", "score", "flagged", "matched_lines_a", "matched_lines_b"]
_STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table.list td, table.list th { padding: 0.2em 0.8em; text-align: left; }
.pair { display: flex; gap: 1em; }
.pair > div { flex: 1; min-width: 0; overflow-x: auto; }
table.code { border-collapse: collapse; font-family: monospace; font-size: 0.85em; }
table.code td { padding: 0 0.5em; white-space: pre; vertical-align: top; }
table.code td.n { color: #888; text-align: right; user-select: none; }
table.code tr.hit td { background: #ffe08a; }
section { border-top: 1px solid #ccc; margin-top: 1.5em; }
"""


def line_ranges(function: Function, indexes: tuple[int, ...]) -> str:
    """The lines ``indexes`` of ``function`` as the student sees them: ``"the cell defining
    triplet_loss: lines 9-14, 17"`` (or ``"lines 9-14, 17 of triplet_loss"`` when the cells are
    not known)."""
    groups: dict[str, list[int]] = {}
    for i in indexes:
        where = function.where[i]
        cell, line = where if where else (f"{function.name}, counted from its def", i + 1)
        groups.setdefault(cell, []).append(line)
    parts = []
    for cell, lines in groups.items():
        spans, start = [], None
        for k, line in enumerate(lines):
            start = line if start is None else start
            if k + 1 == len(lines) or lines[k + 1] != line + 1:
                spans.append(f"{start}-{line}" if line > start else f"{line}")
                start = None
        parts.append(f"{cell}: lines {', '.join(spans)}")
    return "; ".join(parts)


def write_csv(path: Path, result: ClassSimilarity) -> None:
    """Every pair of functions that shares code beyond the skeleton, then every pair of checkpoints
    or of a student and a course network within :data:`~autograder.labs.lab2_triplet.copies.NEAR_COPY` (score: 1 - their
    distance)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for m in result.code:
            writer.writerow([m.student_a, m.student_b, m.function, f"{m.score:.3f}", "yes" if m.flagged else "no",
                             line_ranges(result.functions[m.student_a][m.function], m.lines_a),
                             line_ranges(result.functions[m.student_b][m.function], m.lines_b)])
        for w in result.weights:
            writer.writerow([w.student, w.other, result.checkpoint, f"{1 - w.distance:.4f}", "yes", w.detail, ""])


def write_html(path: Path, result: ClassSimilarity) -> None:
    """The flagged pairs side by side, matching lines highlighted; the checkpoints; the notes."""
    e = html.escape
    lab, weights, checkpoint, notes = result.lab, result.weights, result.checkpoint, result.notes
    flagged = [m for m in result.code if m.flagged]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
           f"<title>Similarity: {e(lab)}</title><style>{_STYLE}</style></head><body>",
           f"<h1>Similarity of the {len(result.students)} submissions of {e(lab)}</h1>",
           f"<p>Pairs of functions of which at least {FLAG_SCORE:.0%} of the smaller version's code (normalized: "
           f"names, formatting, comments and the order of statements do not count; the released notebook's code "
           f"left out) is also in the other, over at least {MIN_MATCHED_LINES} lines on each side; checkpoints "
           f"whose weights are within {NEAR_COPY:.0%} of each other's or of a course network's. This report "
           f"flags; it changes no grade. A flag is a reason to look, not a proof: read the code.</p>"]
    if weights:
        out.append(f"<h2>{e(checkpoint)}: the same or nearly the same weights</h2><table class=\"list\">"
                   "<tr><th>student</th><th>and</th><th>what</th></tr>")
        out += [f"<tr><td>{e(w.student)}</td><td>{e(w.other)}</td><td>{e(w.detail)}</td></tr>" for w in weights]
        out.append("</table>")
    out.append(f"<h2>Functions: {len(flagged)} flagged pair(s)</h2>")
    if len(flagged) > MAX_SHOWN:
        out.append(f"<p>The {MAX_SHOWN} highest scores are shown; similarity.csv lists all {len(flagged)}.</p>")
    for m in flagged[:MAX_SHOWN]:
        out.append(f"<section><h3>{e(m.student_a)} and {e(m.student_b)}: {e(m.function)}, score {m.score:.2f}</h3>"
                   "<div class=\"pair\">")
        for student, lines in ((m.student_a, m.lines_a), (m.student_b, m.lines_b)):
            table = _code_table(result.functions[student][m.function], set(lines))
            out.append(f"<div><h4>{e(student)}</h4>{table}</div>")
        out.append("</div></section>")
    if any(notes.values()):
        out.append("<h2>Not compared, or compared in part</h2><table class=\"list\">")
        out += [f"<tr><td>{e(student)}</td><td>{e(note)}</td></tr>" for student, items in sorted(notes.items())
                for note in items]
        out.append("</table>")
    out.append("</body></html>\n")
    path.write_text("\n".join(out), encoding="utf-8")


def _code_table(function: Function, hits: set[int]) -> str:
    rows = []
    for i, (text, where) in enumerate(zip(function.lines, function.where)):
        number = where[1] if where else i + 1
        row = '<tr class="hit">' if i in hits else "<tr>"
        rows.append(f'{row}<td class="n">{number}</td><td>{html.escape(text)}</td></tr>')
    return f"<table class=\"code\">{''.join(rows)}</table>"


def summary(result: ClassSimilarity, out: Path) -> str:
    """The lines printed after the grade table."""
    weights, checkpoint = result.weights, result.checkpoint
    flagged = [m for m in result.code if m.flagged]
    lines = [f"similarity of {len(result.students)} submission(s) of {result.lab}: {len(flagged)} pair(s) of "
             f"functions and {len(weights)} of checkpoints flagged (flags only: no grade changed)"]
    rows = [(f"{m.student_a} & {m.student_b}", m.function,
             f"{m.score:.2f} ({len(m.lines_a)} and {len(m.lines_b)} lines)") for m in flagged]
    rows += [(f"{w.student} & {w.other}", checkpoint, w.detail) for w in weights]
    lines += [f"  {who[:40]:40} {what[:20]:20} {how}" for who, what, how in rows[:MAX_PRINTED]]
    if len(rows) > MAX_PRINTED:
        lines.append(f"  ... and {len(rows) - MAX_PRINTED} more")
    for function, count in result.common.items():
        if count:
            lines.append(f"  {function}: {count} k-gram(s) that more than half of the class shares taken as common")
    unread = sorted(student for student, items in result.notes.items() if items)
    if unread:
        lines.append(f"  {len(unread)} submission(s) not compared, or in part: {', '.join(unread[:10])}"
                     + (", ..." if len(unread) > 10 else "") + " (see the report)")
    lines.append(f"report: {out / 'similarity.html'}; every pair that shares code: {out / 'similarity.csv'}")
    return "\n".join(lines)
