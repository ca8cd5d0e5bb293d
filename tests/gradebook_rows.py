"""Reading what ``python -m autograder grade`` wrote, for the end-to-end tests."""

from __future__ import annotations

import csv
from pathlib import Path


def mnist_available() -> bool:
    """Whether the fixed MNIST test set loads from the data root (the grading tests need it)."""
    try:
        from labtools.data import fixed_test_set

        fixed_test_set("MNIST", download=False)
        return True
    except Exception:
        return False


def read_grades(out: Path) -> dict[str, dict[str, dict]]:
    """``grades.csv`` of the output folder ``out``: ``{student: {check or "TOTAL": row}}``."""
    rows: dict[str, dict[str, dict]] = {}
    with open(out / "grades.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            rows.setdefault(row["student"], {})[row["check"]] = row
    return rows


def lost(checks: dict[str, dict]) -> set[str]:
    """The checks of one student's rows that did not earn all their points."""
    return {c for c, row in checks.items() if c != "TOTAL" and float(row["points"]) < float(row["max_points"])}
