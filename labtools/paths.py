"""Where the kit's files are: the shipped checkpoints, the data root and the cache folder.

A lab notebook may run from ``notebooks/``, from the course's ``autograder/course/source/<lab>/``,
from ``autograder/course/autograded/<student>/<lab>/`` or from a student's unpacked bundle, so
the ``models/`` folder is looked up rather than written as a fixed relative path.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MARKER", "CACHE_ROOT", "DEFAULT_DATA_ROOT", "models_dir", "model_path", "resolve_data_root"]

#: The file whose presence marks a folder as the kit's ``models/`` folder.
MARKER = "mnist_classifier.json"
#: The kit's cache folder: ``$XDG_CACHE_HOME/metric-lab`` (default ``~/.cache/metric-lab``).
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "metric-lab"
#: Where the data goes when neither an argument nor ``LABTOOLS_DATA`` names a folder.
DEFAULT_DATA_ROOT = CACHE_ROOT / "data"


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """Return the data root: ``root`` if given, else ``$LABTOOLS_DATA``, else the default folder."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("LABTOOLS_DATA")
    if env:
        return Path(env).expanduser()
    return DEFAULT_DATA_ROOT


def _package_models() -> Path:
    """The ``models/`` folder next to the installed labtools package (the repository's, in a checkout)."""
    return Path(__file__).resolve().parent.parent / "models"


def models_dir(start: str | os.PathLike | None = None) -> Path:
    """Return the folder that holds the shipped checkpoints (``mnist_classifier.pt`` and the others).

    Looked up in this order:

    1. the ``LABTOOLS_MODELS`` environment variable, when set (it must name an existing folder);
    2. ``start`` (default: the current working directory) and each of its parents, the first one
       with a ``models/mnist_classifier.json`` file;
    3. the ``models/`` folder next to the installed labtools package, when it has that file.

    Raises FileNotFoundError, listing where it looked, when none of them has the checkpoints.
    """
    env = os.environ.get("LABTOOLS_MODELS")
    if env:
        folder = Path(env).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"LABTOOLS_MODELS={env!r} is not a folder")
        return folder.resolve()
    here = Path(start if start is not None else os.getcwd()).expanduser().resolve()
    searched = []
    for folder in (here, *here.parents):
        candidate = folder / "models"
        searched.append(candidate)
        if (candidate / MARKER).is_file():
            return candidate
    fallback = _package_models()
    if (fallback / MARKER).is_file():
        return fallback
    searched.append(fallback)
    raise FileNotFoundError(
        f"cannot find the course's models/ folder (a folder holding {MARKER}); looked in:\n"
        + "\n".join(f"  {p}" for p in searched)
        + "\nRun the notebook from inside the course folder, or set LABTOOLS_MODELS to the models folder."
    )


def model_path(name: str, start: str | os.PathLike | None = None) -> Path:
    """Path of the shipped file ``name`` (e.g. ``"mnist_classifier.pt"``) in :func:`models_dir`."""
    return models_dir(start) / name
