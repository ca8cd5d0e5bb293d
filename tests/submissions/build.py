"""Build sample submissions for the tests: the reference's code (or a snippet) put into a notebook.

Nothing here is a copy of a solution: :func:`reference_code` reads the functions of
``autograder.labs.<lab>.reference`` at test time, and the mistaken or hostile versions are small snippets
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

from labtools import labs

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
UNGRADED = {"lab1_retrieval": (), "lab2_triplet": ("distances", "evaluate_AP", "evaluate_mAP"),
            "lab3_smoothap": ("distances", "evaluate_AP", "evaluate_mAP", "triplet_loss"),
            "lab4_beyond": ("distances", "kmeans", "contingency_table")}
#: Typical mistakes, made by editing the reference's source at test time, and the checks each must lose:
#: ``{lab: {mistake: ([(old, new), ...], lost checks)}}``. An edit applies to every reference function
#: that contains ``old``. A mistake in a helper also costs the checks of the graded functions that call
#: it (Lab 5's dvml_loss uses the student's kl_divergence and semihard_triplet_loss). The same table
#: drives the sandbox tests (tests/test_lab_checks.py) and the nbgrader runs (tests/test_grading_e2e.py).
_SMOOTH_AP_VALUES = {f"smooth_ap_loss.{c}" for c in ("hand_example", "tau", "query_excluded", "hidden_fixed",
                                                      "hidden_random")}
_RECALL_VALUES = {f"recall_at_k.{c}" for c in ("hand_example", "leave_one_out", "singletons", "hidden_fixed",
                                                 "hidden_random")}
_KL = {"kl_divergence.hand_example", "kl_divergence.hidden_fixed", "kl_divergence.hidden_random"}
_DVML_VALUES = {"dvml_loss.hidden_fixed", "dvml_loss.hidden_random"}
_SEMIHARD_LOSS = {"semihard_triplet_loss.hand_example", "semihard_triplet_loss.hidden_fixed",
                  "semihard_triplet_loss.hidden_random", "dvml_loss.triplet_terms"} | _DVML_VALUES
MISTAKES = {
    "lab3_smoothap": {
        "query_included": ([("not_query = index[None, :] != index[:, None]",
                             "not_query = torch.ones(len(labels), len(labels), dtype=torch.bool, device=labels.device)")],
                           _SMOOTH_AP_VALUES | {"smooth_ap_loss.range"}),
        "wrong_sign": ([("(sim[:, None, :] - s_pos[:, :, None])", "(s_pos[:, :, None] - sim[:, None, :])")],
                       _SMOOTH_AP_VALUES | {"smooth_ap_loss.perfect_ranking"}),
        "tau_ignored": ([("/ tau)", ")")], _SMOOTH_AP_VALUES | {"smooth_ap_loss.perfect_ranking"}),
    },
    "lab4_beyond": {
        # the query is its own nearest neighbour: every Recall@K is 1
        "recall_query_included": ([("dist.fill_diagonal_(math.inf)  # a query is not its own neighbour", "")],
                                  _RECALL_VALUES),
        # items tied with the nearest positive push it down (the hidden inputs have exact ties)
        "recall_ties_count_against": ([("rank = 1 + (dist < nearest_positive[:, None]).sum(dim=1)",
                                        "rank = 1 + (dist < nearest_positive[:, None]).sum(dim=1)"
                                        " + ((dist == nearest_positive[:, None]) & ~same).sum(dim=1)")],
                                      {"recall_at_k.hand_example", "recall_at_k.hidden_fixed",
                                       "recall_at_k.hidden_random"}),
        # NMI normalized by the larger entropy: the public examples have equal entropies, only the hidden checks see it
        "nmi_max_normalization": ([("(mutual_information / ((h_labels + h_clusters) / 2))",
                                    "(mutual_information / torch.maximum(h_labels, h_clusters))")],
                                  {"nmi.hidden_fixed", "nmi.hidden_random"}),
        # F1 over ordered pairs, each item also paired with itself (perfect clusters still give F1 = 1)
        "f1_ordered_pairs": ([("both = (table * (table - 1) / 2).sum()", "both = (table * table).sum()"),
                              ("(table.sum(dim=1) * (table.sum(dim=1) - 1) / 2).sum()", "(table.sum(dim=1) ** 2).sum()"),
                              ("(table.sum(dim=0) * (table.sum(dim=0) - 1) / 2).sum()", "(table.sum(dim=0) ** 2).sum()")],
                             {"f1.mixed", "f1.hand_example", "f1.hidden_fixed", "f1.hidden_random"}),
        # the head L2-normalizes without layer-normalizing first
        "head_without_layer_norm": ([("x = F.layer_norm(x, x.shape[-1:])", "pass")],
                                    {"NormSoftmax.layer_norm", "NormSoftmax.hidden_random"}),
        "head_with_learned_layer_norm": ([("x = F.layer_norm(x, x.shape[-1:])", "x = F.normalize(x, dim=1) * 4")],
                                         {"NormSoftmax.layer_norm", "NormSoftmax.hidden_random"}),
        # the logits are the bare cosines (the normalization check runs at temperature 1, where this changes nothing)
        "temperature_ignored": ([(".T / temperature  # [B, C]", ".T  # [B, C]")],
                                {"norm_softmax_loss.hand_example", "norm_softmax_loss.hidden_fixed",
                                 "norm_softmax_loss.hidden_random"}),
        # the angular margin on every class, not only the true one (margin 0 is right whatever gets it)
        "arcface_margin_on_every_class": ([("logits = cos.scatter(1, labels[:, None], true_logit)",
                                            "logits = torch.cos(torch.acos(cos.clamp(-1, 1)) + margin)")],
                                          {"arcface_loss.hand_example", "arcface_loss.hidden_fixed",
                                           "arcface_loss.hidden_random"}),
        "arcface_margin_on_the_cosine": ([("torch.cos(theta + margin)", "true_cos - margin")],
                                         {"arcface_loss.hand_example", "arcface_loss.hidden_fixed",
                                          "arcface_loss.hidden_random"}),
    },
    "lab5_dvml": {
        "kl_summed_over_the_batch": ([("(logvar.exp() + mu.square() - 1 - logvar).sum(dim=1).mean()",
                                       "(logvar.exp() + mu.square() - 1 - logvar).sum()")],
                                     _KL | {"dvml_loss.kl_and_reconstruction"} | _DVML_VALUES),
        "sigma_is_exp_logvar": ([("return mu + (0.5 * logvar).exp() * eps", "return mu + logvar.exp() * eps")],
                                {"reparameterize.moments", "reparameterize.hidden_fixed"}),
        "hard_negatives_too": ([(" & (an > ap) & ", " & ")],
                               {"semihard_triplets.hand_example", "semihard_triplets.margin",
                                "semihard_triplets.hidden_fixed", "semihard_triplets.hidden_random"} | _SEMIHARD_LOSS),
        # a negative exactly as far as the positive taken as semi-hard: only inputs with exact ties see it
        "semihard_ties_included": ([("(an > ap)", "(an >= ap)")],
                                   {"semihard_triplets.hidden_fixed", "semihard_triplets.hidden_random",
                                    "semihard_triplet_loss.hidden_fixed", "semihard_triplet_loss.hidden_random"}),
        "hinges_summed": ([("return hinge.sum() / max(len(a), 1)", "return hinge.sum()")], _SEMIHARD_LOSS),
        "reconstruction_summed": ([('"reconstruction": F.mse_loss(reconstruction, features.detach()),',
                                    '"reconstruction": F.mse_loss(reconstruction, features.detach(), reduction="sum"),')],
                                  {"dvml_loss.kl_and_reconstruction"} | _DVML_VALUES),
    },
}
HEADER = "import torch\nfrom labtools.models import ConvNet, extract_features, load_checkpoint, save_checkpoint\n"


def reference_code() -> dict[str, str]:
    from autograder.labs.lab1_retrieval import reference as lab1
    from autograder.labs.lab2_triplet import reference as lab2
    from autograder.labs.lab3_smoothap import reference as lab3
    from autograder.labs.lab4_beyond import reference as lab4
    from autograder.labs.lab5_dvml import reference as lab5

    functions = [lab1.distances, lab1.evaluate_AP, lab1.evaluate_mAP, lab2.triplet_loss, lab3.smooth_ap_loss]
    functions += [getattr(lab4, name) for name in ("recall_at_k", "kmeans", "contingency_table", "nmi", "f1",
                                                   "NormSoftmax", "norm_softmax_loss", "arcface_loss")]
    functions += [getattr(lab5, name) for name in ("kl_divergence", "reparameterize", "semihard_triplets",
                                                   "semihard_triplet_loss", "dvml_loss")]
    code = {f.__name__: inspect.getsource(f) for f in functions + [getattr(lab3, "train", None)] if f is not None}
    code["train_triplets"] = (HERE / "student_train_triplets.py").read_text()
    return code


def mistake(lab: str, name: str) -> dict[str, str]:
    """``{function: source}``: the reference functions that :data:`MISTAKES` ``[lab][name]`` edits, edited."""
    reference, replaced = reference_code(), {}
    for old, new in MISTAKES[lab][name][0]:
        hits = [function for function, source in {**reference, **replaced}.items() if old in source]
        if not hits:
            raise ValueError(f"no reference function of {lab} contains {old!r} any more: update MISTAKES")
        for function in hits:
            replaced[function] = replaced.get(function, reference[function]).replace(old, new)
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
