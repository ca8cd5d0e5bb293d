"""Where the instructor's files are: the repository, the course, the released notebooks, the models.

Every other module takes these from here instead of working them out from its own ``__file__``.
The lab folders are :func:`autograder.labs.lab_dir`; the data root and the cache are
:mod:`labtools.paths`.
"""

from __future__ import annotations

from pathlib import Path

from labtools.paths import models_dir

__all__ = ["REPO", "COURSE_DIR", "RELEASE_DIR", "REPO_MODELS", "grader_models_dir"]

#: The repository (the folder holding ``autograder/`` and ``labtools/``).
REPO = Path(__file__).resolve().parents[1]
#: The nbgrader course: ``nbgrader_config.py``, ``source/<lab>/<lab>.ipynb``.
COURSE_DIR = REPO / "autograder" / "course"
#: The released (student) notebooks.
RELEASE_DIR = REPO / "notebooks"
#: The repository's own ``models/`` folder.
REPO_MODELS = REPO / "models"


def grader_models_dir() -> Path:
    """The ``models/`` folder the grader reads: ``LABTOOLS_MODELS`` when set, else the repository's
    (the same lookup as the notebooks', :func:`labtools.paths.models_dir`, started at the repository)."""
    return models_dir(REPO)
