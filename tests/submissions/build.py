"""Build sample submissions for the tests: the reference's code, or a mistake's, put into a notebook.

Nothing here is a copy of a solution: :func:`reference_code` reads the functions of
``autograder.labs.<lab>.reference`` at test time. Each lab's typical mistakes are a table,
``MISTAKES`` in ``tests/labs/mistakes/<lab>.py`` (:func:`mistakes`): each :class:`Mistake` is edits
of the reference's source or a rewrite of some of its functions, and :func:`mistake_code` turns it
into the functions that replace the reference's (tests/labs/test_every_lab.py checks that each loses
exactly its checks; the hidden-check, hostile and end-to-end tests grade the same tables). Hostile
versions are snippets (``hostile/*.py``) whose functions replace the reference's
(:func:`snippet_functions`). When the released notebook ``notebooks/<lab>.ipynb`` exists its cells
are used; otherwise a fixture notebook with the same nbgrader metadata is built (:func:`source_notebook`).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labtools import labs

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
UNGRADED = {"lab1_retrieval": (), "lab2_triplet": ("distances", "evaluate_AP", "evaluate_mAP"),
            "lab3_smoothap": ("distances", "evaluate_AP", "evaluate_mAP", "triplet_loss"),
            "lab4_beyond": ("distances", "kmeans", "contingency_table")}
MISTAKES_DIR = HERE.parent / "labs" / "mistakes"
HEADER = "import torch\nfrom labtools.models import ConvNet, extract_features, load_checkpoint, save_checkpoint\n"


def reference_code() -> dict[str, str]:
    """``{name: source}`` of every lab's solutions from its reference (each spec's own, not those it
    borrows; the first lab's copy of a name), Lab 2's ``train_triplets`` as a student writes it."""
    from autograder.labs import reference
    from labtools.labs import lab, lab_ids

    code = {}
    for lab_id in lab_ids():
        module = reference(lab_id)
        for solution in lab(lab_id).solutions:
            if solution.reference is None and solution.name not in code and hasattr(module, solution.name):
                code[solution.name] = inspect.getsource(getattr(module, solution.name))
    code["train_triplets"] = (HERE / "student_train_triplets.py").read_text()
    return code


@dataclass(frozen=True)
class Mistake:
    """A typical mistake in a lab's graded code, and the checks it must lose.

    Either ``edits`` of the reference's source, ``(old, new)`` pairs each applied to every reference
    function that contains ``old``, or a ``rewrite``: code whose top-level functions replace the
    reference's (each with the rewrite's imports in front). ``lost``: every check it loses when its lab grades it,
    public and hidden (the file checks of a submitted checkpoint left out); a mistake in a helper
    also costs the checks of the graded functions that call it. ``right_values``: its values are
    right (a loop, a [B, B, B] tensor), so the hidden checks, which compare values, must accept it.
    """

    lost: frozenset[str]
    edits: tuple[tuple[str, str], ...] = ()
    rewrite: str = ""
    right_values: bool = False

    def __post_init__(self):
        if bool(self.edits) == bool(self.rewrite):
            raise ValueError("a Mistake is either edits of the reference or a rewrite")
        object.__setattr__(self, "lost", frozenset(self.lost))
        object.__setattr__(self, "edits", tuple(self.edits))


@functools.cache
def mistakes(lab: str) -> dict[str, Mistake]:
    """``{name: Mistake}``: the typical mistakes of ``lab``, its ``tests/labs/mistakes/<lab>.py``."""
    spec = importlib.util.spec_from_file_location(f"mistakes_{lab}", MISTAKES_DIR / f"{lab}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MISTAKES


def mistake_code(lab: str, name: str) -> dict[str, str]:
    """``{function: source}``: the functions that ``lab``'s mistake ``name`` replaces, as it writes them
    (a rewrite's functions; for edits, the reference functions they change, edited)."""
    mistake = mistakes(lab)[name]
    if mistake.rewrite:
        return functions_of(mistake.rewrite)
    reference, replaced = reference_code(), {}
    for old, new in mistake.edits:
        hits = [function for function, source in {**reference, **replaced}.items() if old in source]
        if not hits:
            raise ValueError(f"no reference function of {lab} contains {old!r} any more: update {name} "
                             f"in {MISTAKES_DIR / lab}.py")
        for function in hits:
            replaced[function] = replaced.get(function, reference[function]).replace(old, new)
    return replaced


def functions_of(text: str) -> dict[str, str]:
    """The top-level functions of ``text`` by name, each with the imports of ``text`` in front."""
    tree = ast.parse(text)
    imports = "".join(ast.get_source_segment(text, n) + "\n" for n in tree.body
                      if isinstance(n, (ast.Import, ast.ImportFrom)))
    return {n.name: imports + ast.get_source_segment(text, n) + "\n" for n in tree.body
            if isinstance(n, ast.FunctionDef)}


def snippet_functions(path: Path) -> dict[str, str]:
    """The top-level functions of a snippet file by name (with the snippet's imports in front).

    ``@REPO@`` in a snippet stands for this checkout's root (hostile snippets aim at its files).
    """
    return functions_of(path.read_text().replace("@REPO@", str(REPO)))


def _meta(grade_id, *, grade, solution, locked, points=None):
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution,
            "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def source_notebook(lab: str) -> nbformat.NotebookNode:
    """A fixture source notebook (solutions between BEGIN/END SOLUTION) with the course's metadata."""
    code = reference_code()
    cells = [new_markdown_cell(f"# {lab} (test fixture)"),
             new_code_cell(HEADER, metadata=_meta("imports", grade=False, solution=False, locked=True))]
    for name in UNGRADED[lab]:
        cells.append(new_code_cell(f"### BEGIN SOLUTION\n{code[name]}### END SOLUTION\n",
                                   metadata=_meta(name, grade=False, solution=True, locked=False)))
    for name, points in labs.lab(lab).test_points.items():
        if name != "checkpoint":
            cells.append(new_code_cell(f"### BEGIN SOLUTION\n{code[name]}### END SOLUTION\n",
                                       metadata=_meta(name, grade=False, solution=True, locked=False)))
            call = f'run_public_checks("{lab}", "{name}", {name})'
        else:
            call = f'run_public_checks("{lab}", "checkpoint", "triplet_net.pt")'
        cells.append(new_code_cell(f"from labtools.checks import run_public_checks\n{call}\n",
                                   metadata=_meta(f"test_{name}", grade=True, solution=False, locked=True,
                                                  points=points)))
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def make_course(root: Path, labs=("lab1_retrieval", "lab2_triplet")) -> Path:
    """A course folder: the repo's nbgrader_config.py and the source notebooks (the repo's when they
    exist, else fixtures)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "autograder" / "course" / "nbgrader_config.py", root / "nbgrader_config.py")
    for lab in labs:
        target = root / "source" / lab / f"{lab}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        repo_source = REPO / "autograder" / "course" / "source" / lab / f"{lab}.ipynb"
        if repo_source.is_file():
            shutil.copy(repo_source, target)
        else:
            nbformat.write(source_notebook(lab), target)
    return root


def student_notebook(lab: str, replace: dict[str, str] | None = None, course: Path | None = None):
    """A submission: the released notebook (else the course's source notebook, else a fixture) with
    each solution code cell holding the reference's code, or the code of ``replace`` for the
    functions it names. Starting from the release keeps the metadata a real student submits."""
    candidates = [REPO / "notebooks" / f"{lab}.ipynb"] + ([course / "source" / lab / f"{lab}.ipynb"] if course else [])
    found = next((path for path in candidates if path.is_file()), None)
    nb = nbformat.read(found, as_version=4) if found else source_notebook(lab)
    code = {**reference_code(), **(replace or {})}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        name = meta.get("grade_id")
        if cell.cell_type == "code" and meta.get("solution") and name in code:
            cell.source = code[name]
    return nb


def write_submission(folder: Path, lab: str, replace=None, course=None, checkpoint: Path | None = None,
                     name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{lab}.ipynb")
    nbformat.write(student_notebook(lab, replace, course), path)
    if checkpoint is not None:
        shutil.copy(checkpoint, folder / "triplet_net.pt")
    return path
