"""The instructor side of each lab, one folder per lab: ``autograder/labs/<lab id>/``.

- ``reference.py``: the one copy of the lab's solutions (the notebook's solution cells are
  generated from it, the hidden checks compare with it);
- ``notebook.py``: the notebook's source (percent format, see :mod:`autograder.notebooks`) and
  ``notebook.outputs.json``, the outputs nbval compares;
- ``hidden.py``: the lab's hidden checks;
- ``reference_outputs.pt``: the reference's outputs on the hidden checks' fixed inputs.

The lab itself (its id, graded functions, points, deliverables) is declared once, in the shipped
``labtools/labs/<lab id>.py``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from labtools.labs import lab

LABS_DIR = Path(__file__).resolve().parent


def lab_dir(lab_id: str) -> Path:
    """The instructor folder of ``lab_id`` (a KeyError for an unknown lab)."""
    return LABS_DIR / lab(lab_id).id


def reference(lab_id: str) -> ModuleType:
    """The reference module of ``lab_id``."""
    return importlib.import_module(f"autograder.labs.{lab(lab_id).id}.reference")
