"""Build sample submissions for the tests: the reference's code (or a snippet) put into a notebook.

Nothing here is a copy of a solution: :func:`reference_code` reads the functions of
``autograder.reference`` at test time, and the mistaken or hostile versions are small snippets
(``lab1/*.py``, ``lab2/*.py``) whose functions replace the reference's. When the released notebook
``notebooks/<lab>.ipynb`` exists its cells are used; otherwise a fixture notebook with the same
nbgrader metadata is built (:func:`source_notebook`).
"""

from __future__ import annotations

import ast
import inspect
import json
import shutil
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
POINTS = {
    "lab1_retrieval": {"distances": 1.5, "evaluate_AP": 1.5, "evaluate_mAP": 1.0},
    "lab2_triplet": {"triplet_loss": 2.0, "train_triplets": 1.0, "checkpoint": 3.0},
    "lab3_smoothap": {"smooth_ap_loss": 3.0},
    "lab4_beyond": {"recall_at_k": 1.5, "nmi": 1.5, "f1": 1.5, "NormSoftmax": 1.0, "norm_softmax_loss": 1.0,
                    "arcface_loss": 1.0},
}
UNGRADED = {"lab1_retrieval": (), "lab2_triplet": ("distances", "evaluate_AP", "evaluate_mAP"),
            "lab3_smoothap": ("distances", "evaluate_AP", "evaluate_mAP", "triplet_loss"),
            "lab4_beyond": ("distances", "kmeans", "contingency_table")}
#: Lab 3 mistakes made by editing the reference's source at test time: (old, new) text edits.
SMOOTH_AP_MISTAKES = {
    "query_included": [("not_query = index[None, :] != index[:, None]",
                        "not_query = torch.ones(len(labels), len(labels), dtype=torch.bool, device=labels.device)")],
    "wrong_sign": [("(sim[:, None, :] - s_pos[:, :, None])", "(s_pos[:, :, None] - sim[:, None, :])")],
    "tau_ignored": [("/ tau)", ")")],
}
#: Lab 4 mistakes, edits of the reference's source per function: {mistake: {function: [(old, new), ...]}}.
LAB4_MISTAKES = {
    # the query is its own nearest neighbour: every Recall@K is 1
    "recall_query_included": {"recall_at_k": [("dist.fill_diagonal_(math.inf)  # a query is not its own neighbour",
                                               "")]},
    # NMI normalized by the larger entropy instead of the mean of the two
    "nmi_max_normalization": {"nmi": [("(mutual_information / ((h_labels + h_clusters) / 2))",
                                       "(mutual_information / torch.maximum(h_labels, h_clusters))")]},
    # F1 over ordered pairs, each item also paired with itself: n^2 pairs per cell instead of n(n-1)/2
    "f1_ordered_pairs": {"f1": [("both = (table * (table - 1) / 2).sum()", "both = (table * table).sum()"),
                                ("(table.sum(dim=1) * (table.sum(dim=1) - 1) / 2).sum()", "(table.sum(dim=1) ** 2).sum()"),
                                ("(table.sum(dim=0) * (table.sum(dim=0) - 1) / 2).sum()", "(table.sum(dim=0) ** 2).sum()")]},
    # the head L2-normalizes without layer-normalizing first
    "head_without_layer_norm": {"NormSoftmax": [("x = F.layer_norm(x, x.shape[-1:])", "pass")]},
    # the logits are the bare cosines: the temperature is ignored
    "temperature_ignored": {"norm_softmax_loss": [(".T / temperature  # [B, C]", ".T  # [B, C]")]},
    # the angular margin is added to the angle of every class, not only the true one
    "arcface_margin_on_every_class": {"arcface_loss": [
        ("logits = cos.scatter(1, labels[:, None], true_logit)", "logits = torch.cos(torch.acos(cos.clamp(-1, 1)) + margin)")]},
}
HEADER = "import torch\nfrom labtools.models import ConvNet, extract_features, load_checkpoint, save_checkpoint\n"


def reference_code() -> dict[str, str]:
    from autograder.reference import lab1, lab2, lab3, lab4

    functions = [lab1.distances, lab1.evaluate_AP, lab1.evaluate_mAP, lab2.triplet_loss, lab3.smooth_ap_loss]
    functions += [getattr(lab4, name) for name in ("recall_at_k", "kmeans", "contingency_table", "nmi", "f1",
                                                   "NormSoftmax", "norm_softmax_loss", "arcface_loss")]
    code = {f.__name__: inspect.getsource(f) for f in functions + [getattr(lab3, "train", None)] if f is not None}
    code["train_triplets"] = (HERE / "student_train_triplets.py").read_text()
    return code


def smooth_ap_mistake(name: str) -> dict[str, str]:
    """``{"smooth_ap_loss": source}``: the reference with the edits of :data:`SMOOTH_AP_MISTAKES`."""
    source = reference_code()["smooth_ap_loss"]
    for old, new in SMOOTH_AP_MISTAKES[name]:
        if old not in source:
            raise ValueError(f"the reference smooth_ap_loss no longer contains {old!r}: update SMOOTH_AP_MISTAKES")
        source = source.replace(old, new)
    return {"smooth_ap_loss": source}


def lab4_mistake(name: str) -> dict[str, str]:
    """``{function: source}``: the reference's functions with the edits of :data:`LAB4_MISTAKES`."""
    replaced = {}
    for function, edits in LAB4_MISTAKES[name].items():
        source = reference_code()[function]
        for old, new in edits:
            if old not in source:
                raise ValueError(f"the reference {function} no longer contains {old!r}: update LAB4_MISTAKES")
            source = source.replace(old, new)
        replaced[function] = source
    return replaced


def snippet_functions(path: Path) -> dict[str, str]:
    """The top-level functions of a snippet file by name (with the snippet's imports in front).

    ``@REPO@`` in a snippet stands for this checkout's root (hostile snippets aim at its files).
    """
    text = path.read_text().replace("@REPO@", str(REPO))
    tree = ast.parse(text)
    imports = "".join(ast.get_source_segment(text, n) + "\n" for n in tree.body
                      if isinstance(n, (ast.Import, ast.ImportFrom)))
    return {n.name: imports + ast.get_source_segment(text, n) + "\n" for n in tree.body
            if isinstance(n, ast.FunctionDef)}


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
    for name, points in POINTS[lab].items():
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
