"""The lab notebooks: built from autograder/labs/<lab>/notebook.py, released with nbgrader, free of solutions.

* the committed source notebooks are exactly what the builder writes, and the committed
  ``notebooks/`` exactly what a fresh ``nbgrader generate_assignment`` makes of them;
* every solution cell is the reference function or class (one copy), and the release holds none of it;
* the released notebooks run in fast mode up to a NotImplementedError of a graded function.
"""

from __future__ import annotations

import ast
import inspect
import re
import shutil

import nbformat
import pytest
import torch

from autograder import notebooks
from autograder.labs.lab1_retrieval import reference as lab1
from autograder.labs.lab2_triplet import reference as lab2
from autograder.labs.lab3_smoothap import reference as lab3
from autograder.labs.lab4_beyond import reference as lab4
from autograder.labs.lab5_dvml import reference as lab5
from autograder.paths import RELEASE_DIR, grader_models_dir
from labtools.labs import lab as lab_spec

LABS = list(notebooks.LABS)
REFERENCES = {"lab1_retrieval": (lab1,), "lab2_triplet": (lab2, lab1), "lab3_smoothap": (lab3, lab2, lab1),
              "lab4_beyond": (lab4, lab1), "lab5_dvml": (lab5, lab4, lab1)}
#: The dataset each lab's notebook loads (Lab 4 loads MNIST too).
DATASETS = {"lab1_retrieval": "MNIST", "lab2_triplet": "MNIST", "lab3_smoothap": "FashionMNIST",
            "lab4_beyond": "FashionMNIST", "lab5_dvml": "FashionMNIST"}

#: grade_id -> points of every autograded test cell, as each lab's spec declares them.
POINTS = {lab: {f"test_{name}": points for name, points in lab_spec(lab).test_points.items()} for lab in LABS}
#: Solution cells without a test cell of their own (the spec's ungraded solutions): pasted from an
#: earlier lab, Lab 3's training loop, Lab 4's k-means and contingency table (graded through nmi
#: and f1, which call them).
UNGRADED = {lab: set(lab_spec(lab).ungraded) for lab in LABS}
#: Manually graded answer cells (for the report).
#: The shipped cards whose scores each lab's reference_map cell prints, and which scores (those on the card).
CARDS = {
    "lab1_retrieval": {"mnist_classifier": ("map_100",)},
    "lab2_triplet": {"mnist_triplet": ("map_100",)},
    "lab3_smoothap": dict.fromkeys(("fashion_classifier", "fashion_triplet", "fashion_smoothap"),
                                   ("map_100", "map_1000", "map_10000")),
}
#: Lab 4's study: the runs whose cards its study_table cell prints (models/lab4/<run>.json).
STUDY_RUNS = [f"{data}_{loss}_{training}" for data in ("mnist", "fashion")
              for loss in ("norm_softmax", "proxy_nca", "arcface", "subcenter_arcface", "epshn_triplet")
              for training in ("all", "heldout")]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def committed_source(lab):
    return nbformat.read(notebooks.source_notebook_path(lab), as_version=4)


def committed_release(lab):
    return nbformat.read(RELEASE_DIR / f"{lab}.ipynb", as_version=4)


def reference_function(lab, name):
    for module in REFERENCES[lab]:
        if hasattr(module, name):
            return getattr(module, name)
    raise AssertionError(f"no reference function {name} for {lab}")


def nbgrader(cell):
    return cell.metadata.get("nbgrader", {})


def solution_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and nbgrader(c).get("solution")]


is_test_cell = notebooks.is_test_cell


def body_lines(obj):
    """The stripped, non-trivial lines of a reference function's body, or of a class's method bodies
    (what must never be released)."""
    if inspect.isclass(obj):
        body = [line for _, method_body in notebooks.split_class(obj) for line in method_body]
    else:
        _, body = notebooks.split_function(obj)
    return [line.strip() for line in body if len(line.strip()) >= 20 and not line.strip().startswith("#")]


def reference_globals(obj):
    """The module globals a reference function or class's methods use (getclosurevars of each)."""
    functions = [m for m in vars(obj).values() if inspect.isfunction(m)] if inspect.isclass(obj) else [obj]
    return set().union(*(inspect.getclosurevars(f).globals for f in functions))


# ----------------------------------------------------------------------------- building


@pytest.mark.parametrize("lab", LABS)
def test_build_gives_the_committed_source_notebook(lab):
    built = notebooks.dumps(notebooks.build_notebook(lab))
    committed = notebooks.source_notebook_path(lab).read_text()
    assert built == committed, f"rebuild with: python -m autograder.notebooks build {lab}"


@pytest.mark.parametrize("lab", LABS)
def test_build_is_deterministic(lab):
    assert notebooks.dumps(notebooks.build_notebook(lab)) == notebooks.dumps(notebooks.build_notebook(lab))


@pytest.mark.parametrize("lab", LABS)
def test_solution_cells_are_the_reference_functions(lab):
    cells = solution_cells(committed_source(lab))
    assert cells, "no solution cell"
    for cell in cells:
        name = nbgrader(cell)["grade_id"]
        function = reference_function(lab, name)
        assert notebooks.strip_solution_markers(cell.source) == inspect.getsource(function).rstrip("\n")
        # one pair of delimiters per function, one per method of a class
        pairs = len(notebooks.split_class(function)) - 1 if inspect.isclass(function) else 1
        assert cell.source.count(notebooks.BEGIN) == pairs and cell.source.count(notebooks.END) == pairs
        # the delimiters sit at the body's indentation, right after the docstring
        tree = ast.parse(notebooks.strip_solution_markers(cell.source))
        assert tree.body[0].name == name


@pytest.mark.parametrize("lab", LABS)
def test_nbgrader_roles_and_points(lab):
    nb = committed_source(lab)
    tests = {nbgrader(c)["grade_id"]: nbgrader(c)["points"] for c in nb.cells if is_test_cell(c)}
    assert tests == POINTS[lab]
    graded = {nbgrader(c)["grade_id"] for c in solution_cells(nb)} - UNGRADED[lab]
    # one test cell per graded function, plus one per file deliverable (Lab 2's saved checkpoint)
    files = {f"test_{deliverable.name}" for deliverable in lab_spec(lab).files}
    assert {f"test_{name}" for name in graded} | files == set(tests)
    ungraded = {nbgrader(c)["grade_id"] for c in solution_cells(nb) if "ungraded" in c.metadata.get("tags", [])}
    assert ungraded == UNGRADED[lab]
    answers = {
        nbgrader(c)["grade_id"]: nbgrader(c)["points"]
        for c in nb.cells
        if c.cell_type == "markdown" and nbgrader(c).get("solution")
    }
    assert answers == lab_spec(lab).report_points and all(points > 0 for points in answers.values())
    assert lab_spec(lab).max_score == sum(tests.values()) + sum(answers.values())
    ids = [c.id for c in nb.cells]
    assert len(ids) == len(set(ids))
    grade_ids = [nbgrader(c)["grade_id"] for c in nb.cells if nbgrader(c)]
    assert len(grade_ids) == len(set(grade_ids))
    for cell in nb.cells:
        if nbgrader(cell):
            assert nbgrader(cell)["schema_version"] == 3
            assert cell.id == nbgrader(cell)["grade_id"]


@pytest.mark.parametrize("lab", LABS)
def test_only_checked_cells_keep_outputs(lab):
    nb = committed_source(lab)
    checked = [c for c in nb.cells if notebooks.is_checked(c)]
    assert checked, "no NBVAL_CHECK_OUTPUT cell"
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for count, cell in enumerate(code_cells, start=1):
        if notebooks.is_checked(cell):
            assert cell.execution_count == count  # nbval compares only cells with a count
            assert cell.outputs, f"{cell.id}: no recorded output (run build --execute)"
            for output in cell.outputs:
                assert output.output_type in ("stream", "execute_result")
                assert output.get("name", "stdout") == "stdout"
        else:
            assert not cell.outputs and cell.execution_count is None, f"{cell.id} keeps outputs"


@pytest.mark.parametrize("lab", list(CARDS))
def test_checked_outputs_match_the_shipped_cards(lab):
    """The recorded reference mAPs are those on the shipped checkpoints' cards."""
    import json

    try:
        models = grader_models_dir()
    except FileNotFoundError as error:
        pytest.skip(f"the shipped checkpoints are not available: {error}")
    text = next(c for c in committed_source(lab).cells if c.id == "reference_map").outputs[0]["text"]
    for card_name, keys in CARDS[lab].items():
        card = models / f"{card_name}.json"
        if not card.exists():
            pytest.skip(f"{card} not found")
        scores = json.loads(card.read_text())["scores"]
        for key in (key for key in keys if key in scores):
            expected = f"{scores[key]:.3f}"
            assert re.search(rf"(?<![\d.]){re.escape(expected)}(?!\d)", text), (
                f"{lab}: the recorded outputs predate {card.name} ({key} {expected}); "
                f"rerun: LABTOOLS_DATA=... python -m autograder.notebooks build --execute {lab}"
            )


def test_lab4_study_table_matches_the_study_cards():
    """Lab 4's recorded results table (its study_table cell) holds the scores of the shipped study cards."""
    import json

    try:
        study = grader_models_dir() / "lab4"
    except FileNotFoundError as error:
        pytest.skip(f"the shipped checkpoints are not available: {error}")
    missing = [run for run in STUDY_RUNS if not (study / f"{run}.json").is_file()]
    if missing:
        pytest.skip(f"{len(missing)} study cards missing in {study} (e.g. {missing[0]}.json)")
    text = next(c for c in committed_source("lab4_beyond").cells if c.id == "study_table").outputs[0]["text"]
    rows = {}
    for line in text.splitlines()[2:]:
        tokens = line.split()
        rows[tuple(tokens[:-10])] = tokens[-10:]
    assert len(rows) == 2 * len(STUDY_RUNS)
    names = {"mnist": "MNIST", "fashion": "FashionMNIST"}
    for run in STUDY_RUNS:
        card = json.loads((study / f"{run}.json").read_text())
        data, training = run.split("_")[0], run.split("_")[-1]
        trained = ["classes", "0-4"] if training == "heldout" else ["all", "classes"]
        for subset in ("seen", "unseen"):
            s = card["scores"][subset]
            values = [s["p_at_1"], *(s["recall_at_k"][str(k)] for k in (1, 2, 4, 8, 16, 32)), s["nmi"], s["f1"], s["map"]]
            key = (names[data], card["loss"], *trained, subset)
            assert rows.get(key) == [f"{v:.3f}" for v in values], (
                f"the recorded study table predates {run}.json ({subset}); rerun: "
                "LABTOOLS_DATA=... python -m autograder.notebooks build --execute lab4_beyond")


def test_solution_source_places_the_delimiters():
    source = notebooks.solution_source(lab2.train_triplets)
    lines = source.split("\n")
    assert lines[0].startswith("def train_triplets(net, train_set,")
    begin = lines.index("    " + notebooks.BEGIN)
    assert lines[begin - 1].strip() == '"""'  # right after the docstring's closing quotes
    assert lines[-1] == "    " + notebooks.END


CLASS_SOURCE = '''import torch


class Scaled(torch.nn.Module):
    """Multiply by a learned scale.

    The class's docstring stays.
    """

    kind = "scale"  # a class attribute stays

    def __init__(self, size,
                 init=1.0):
        """One scale per feature."""
        super().__init__()
        self.scale = torch.nn.Parameter(torch.full((size,), init))

    @property
    def size(self):
        return len(self.scale)

    def forward(self, x):
        """x [B, size] times the scales."""
        # a comment of the body
        y = x * self.scale

        return y


def helper():
    return 1
'''


@pytest.fixture
def class_module(tmp_path, monkeypatch):
    """A module defining the class Scaled (methods with and without docstrings, a decorator, a
    multi-line def, a blank line inside a body), imported from a file so that inspect finds its source."""
    import importlib

    (tmp_path / "lab_class_sample.py").write_text(CLASS_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module("lab_class_sample")


def test_solution_source_of_a_class_keeps_signatures_and_docstrings(class_module):
    source = notebooks.solution_source(class_module.Scaled)
    assert notebooks.strip_solution_markers(source) == inspect.getsource(class_module.Scaled).rstrip("\n")
    lines = source.split("\n")
    begins = [i for i, line in enumerate(lines) if line.strip() == notebooks.BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == notebooks.END]
    assert len(begins) == len(ends) == 3  # one pair per method
    # each pair at its method body's indentation, right after the def line(s) or the docstring
    assert all(lines[i] == "        " + notebooks.BEGIN for i in begins)
    assert lines[begins[0] - 1].strip() == '"""One scale per feature."""'
    assert lines[begins[1] - 1].strip() == "def size(self):"
    assert lines[begins[2] - 1].strip() == '"""x [B, size] times the scales."""'
    assert lines[ends[2] - 1].strip() == "return y" and lines[ends[2]] == lines[-1]
    # outside the pairs: what students are given
    kept = [line for i, line in enumerate(lines)
            if not any(b <= i <= e for b, e in zip(begins, ends))]
    text = "\n".join(kept)
    for given in ("class Scaled(torch.nn.Module):", "The class's docstring stays.", 'kind = "scale"',
                  "def __init__(self, size,", "init=1.0):", "@property", "def forward(self, x):"):
        assert given in text
    for hidden in ("super().__init__()", "torch.full", "return len(self.scale)", "# a comment of the body",
                   "y = x * self.scale"):
        assert hidden not in text


def test_class_solution_cell_releases_as_stubs(class_module):
    """nbgrader's ClearSolutions turns each method's body into a stub; the class still defines them all."""
    from nbgrader.preprocessors import ClearSolutions

    cell = nbformat.v4.new_code_cell(notebooks.solution_source(class_module.Scaled))
    cell.metadata["nbgrader"] = {"solution": True, "grade": False, "locked": False, "grade_id": "Scaled",
                                 "schema_version": 3, "task": False}
    nb = nbformat.v4.new_notebook(cells=[cell], metadata=dict(notebooks.NOTEBOOK_METADATA))
    released, _ = ClearSolutions().preprocess(nb, {})
    source = released.cells[0].source
    assert source.count("raise NotImplementedError()") == 3 and "BEGIN SOLUTION" not in source
    namespace = {"torch": torch}
    exec(source, namespace)
    stub = namespace["Scaled"]
    assert stub.kind == "scale" and inspect.getdoc(stub) == inspect.getdoc(class_module.Scaled)
    assert inspect.signature(stub) == inspect.signature(class_module.Scaled)
    assert inspect.getdoc(stub.forward) == "x [B, size] times the scales."
    with pytest.raises(NotImplementedError):
        stub(3)
    with pytest.raises(NotImplementedError):
        stub.forward(None, torch.ones(1, 3))


def test_a_class_without_methods_is_refused(tmp_path, monkeypatch):
    import importlib

    (tmp_path / "lab_empty_class.py").write_text('class Empty:\n    """Nothing to write."""\n    size = 3\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="defines no method"):
        notebooks.solution_source(importlib.import_module("lab_empty_class").Empty)


LAB1_CELLS = ["# %% [solution] distances", "# %% [tests] distances", "# %% [solution] evaluate_AP",
              "# %% [tests] evaluate_AP", "# %% [solution] evaluate_mAP", "# %% [tests] evaluate_mAP"]


def answer(cell_id, options=""):
    """The two lines of a Markdown answer cell ``cell_id``."""
    return [f'# %% [markdown] {{"nbgrader": "answer", "id": "{cell_id}"{options}}}', "# *YOUR ANSWER HERE*"]


#: Lab 1's answer cells, as its spec declares them (appended after the code cells by ``lab1_source``).
LAB1_ANSWERS = [line for cell_id in ("report_distances", "report_retrieval", "report_pr_map") for line in answer(cell_id)]


@pytest.fixture
def lab1_source(tmp_path, monkeypatch):
    """A function writing the lines it is given, then (unless ``answers`` says otherwise) Lab 1's answer
    cells, as Lab 1's notebook source (for the builder to refuse)."""
    source = tmp_path / "notebook.py"
    monkeypatch.setattr(notebooks, "source_path", lambda lab: source)

    def write(lines, answers=LAB1_ANSWERS):
        source.write_text("\n".join(lines + answers) + "\n")

    return write


def build_lab1():
    return notebooks.build_notebook("lab1_retrieval", with_outputs=False)


def test_the_cells_of_the_spec_build(lab1_source):
    lab1_source(LAB1_CELLS)
    nb = build_lab1()
    tests = {nbgrader(c)["grade_id"]: nbgrader(c)["points"] for c in nb.cells if is_test_cell(c)}
    assert tests == POINTS["lab1_retrieval"]
    answers = {nbgrader(c)["grade_id"]: nbgrader(c)["points"] for c in nb.cells if c.cell_type == "markdown"}
    assert answers == {"report_distances": 0.5, "report_retrieval": 0.5, "report_pr_map": 0.5}


@pytest.mark.parametrize("answers, where", [
    (answer("report_distances", ', "points": 2') + LAB1_ANSWERS[2:], "notebook.py:7: ['points'] of the answer cell "
                                                                    "report_distances come from the lab's spec"),
    (LAB1_ANSWERS[2:], "the answer cells ['report_retrieval', 'report_pr_map'] are not the report cells"),
    (LAB1_ANSWERS + answer("report_extra"), "notebook.py:13: the answer cells"),
    (LAB1_ANSWERS[2:4] + LAB1_ANSWERS[:2] + LAB1_ANSWERS[4:], "in that order"),
])
def test_answer_cells_are_the_specs_report_cells(lab1_source, answers, where):
    lab1_source(LAB1_CELLS, answers=answers)
    with pytest.raises(notebooks.NotebookSourceError, match="labtools/labs/lab1_retrieval.py") as error:
        build_lab1()
    assert where in str(error.value)


def test_marker_errors_are_reported(lab1_source):
    lab1_source(["# %% [solution] distances", "print('hand-written')"] + LAB1_CELLS[1:])
    with pytest.raises(notebooks.NotebookSourceError, match="generated from the reference"):
        build_lab1()
    lab1_source(["# %% [wrong]", "x = 1"] + LAB1_CELLS)
    with pytest.raises(notebooks.NotebookSourceError, match="unknown cell kind"):
        build_lab1()


@pytest.mark.parametrize("marker", ['# %% [tests] distances {"points": 1.5}',
                                    '# %% [tests] distances {"points": 1.5, "tags": ["nbval-skip"]}',
                                    '# %% [solution] distances {"graded": false}',
                                    '# %% [solution] distances {"reference": "lab2_triplet"}'])
def test_a_source_stating_what_the_spec_holds_is_refused(lab1_source, marker):
    cells = [marker if marker.startswith(cell + " ") else cell for cell in LAB1_CELLS]
    lab1_source(cells)
    with pytest.raises(notebooks.NotebookSourceError) as error:
        build_lab1()
    line = cells.index(marker) + 1
    assert f"notebook.py:{line}: " in str(error.value) and "labtools/labs/lab1_retrieval.py" in str(error.value)


@pytest.mark.parametrize("cells, where", [
    (LAB1_CELLS + ["# %% [solution] triplet_loss"], "notebook.py:7: [solution] triplet_loss is not declared"),
    (LAB1_CELLS + ["# %% [tests] triplet_loss"], "notebook.py:7: [tests] triplet_loss is not declared"),
    (LAB1_CELLS[:-1], "no [tests] cell for evaluate_mAP"),
    (LAB1_CELLS[2:], "no [solution] cell for distances"),
    (LAB1_CELLS[2:4] + LAB1_CELLS[:2] + LAB1_CELLS[4:], "in the order"),
])
def test_a_source_disagreeing_with_the_spec_is_refused(lab1_source, cells, where):
    lab1_source(cells)
    with pytest.raises(notebooks.NotebookSourceError, match="labtools/labs/lab1_retrieval.py") as error:
        build_lab1()
    assert where in str(error.value)


def _bound_names(source):
    """Names a cell binds at the top level: imports, definitions, assignments."""
    source = "\n".join(line for line in source.split("\n") if not line.lstrip().startswith(("%", "!")))
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


@pytest.mark.parametrize("lab", LABS)
def test_solution_cells_find_their_globals(lab):
    """What a reference function takes from its module (imports, helpers) is bound before its cell."""
    bound = set()
    for cell in committed_source(lab).cells:
        if cell.cell_type != "code":
            continue
        if nbgrader(cell).get("solution"):
            name = nbgrader(cell)["grade_id"]
            # getclosurevars also lists attribute names that happen to be module globals (x.__name__,
            # net.train() in `train`): leave out dunders and the function's own name
            needed = reference_globals(reference_function(lab, name)) - {name}
            needed = {g for g in needed if not g.startswith("__")}
            assert needed <= bound, f"{lab}: {name} needs {sorted(needed - bound)} imported before its cell"
        bound |= _bound_names(cell.source)


# ----------------------------------------------------------------------------- the release


@pytest.mark.parametrize("lab", LABS)
def test_fresh_generate_assignment_gives_the_committed_release(lab):
    fresh = notebooks.generate_release(lab)
    committed = (RELEASE_DIR / f"{lab}.ipynb").read_text()
    assert fresh == committed, f"re-release with: python -m autograder.notebooks release {lab}"


@pytest.mark.parametrize("lab", LABS)
def test_release_holds_no_solution(lab):
    text = (RELEASE_DIR / f"{lab}.ipynb").read_text()
    nb = committed_release(lab)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    assert "Model answer" not in text
    assert 'torch.einsum("qd,nd->qn", query, items)' not in text  # the reference distances
    assert "torch.argsort(dist, stable=True)" not in text  # the reference evaluate_AP
    for module in REFERENCES[lab]:
        members = inspect.getmembers(module, lambda m: inspect.isfunction(m) or inspect.isclass(m))
        for name, function in members:
            if function.__module__ != module.__name__:  # imported (torch's, labtools')
                continue
            for line in body_lines(function):
                assert line not in text, f"{lab} release contains the reference line {line!r} of {name}"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    for cell in nb.cells:
        if cell.cell_type == "markdown" and nbgrader(cell).get("solution"):
            assert cell.source == "YOUR ANSWER HERE"
    assert [c.id for c in nb.cells] == [c.id for c in committed_source(lab).cells]


@pytest.mark.parametrize("lab", LABS)
def test_every_released_function_raises_not_implemented(lab):
    cells = solution_cells(committed_release(lab))
    assert {nbgrader(c)["grade_id"] for c in cells} == {nbgrader(c)["grade_id"] for c in solution_cells(committed_source(lab))}
    for cell in cells:
        name = nbgrader(cell)["grade_id"]
        namespace = {"torch": torch, "nn": torch.nn}
        exec(compile(cell.source, f"<{lab}:{name}>", "exec"), namespace)
        function = namespace[name]
        reference = reference_function(lab, name)
        assert inspect.signature(function) == inspect.signature(reference)
        required = [p for p in inspect.signature(function).parameters.values() if p.default is p.empty]
        with pytest.raises(NotImplementedError):
            function(*[None] * len(required))
        if inspect.isclass(function):  # every method is a stub with the reference's signature
            methods = {n for n, m in vars(reference).items() if inspect.isfunction(m)}
            assert methods and methods == {n for n, m in vars(function).items() if inspect.isfunction(m)}
            for method in methods:
                stub = getattr(function, method)
                assert inspect.signature(stub) == inspect.signature(getattr(reference, method))
                assert stub.__doc__ == getattr(reference, method).__doc__  # the docstring, if any, is kept
                with pytest.raises(NotImplementedError):
                    stub(*[None] * sum(p.default is p.empty for p in inspect.signature(stub).parameters.values()))


# ----------------------------------------------------------------------------- running the release


def require_data_and_models(lab):
    """Skip unless the lab's dataset loads from LABTOOLS_DATA and the shipped checkpoints are there."""
    import os

    from labtools.data import DataNotFoundError, fixed_test_set

    try:
        fixed_test_set(DATASETS[lab], download=False)
    except DataNotFoundError as error:
        pytest.skip(f"{DATASETS[lab]} does not load from LABTOOLS_DATA={os.environ.get('LABTOOLS_DATA')!r}: {error}")
    try:
        models = grader_models_dir()
    except FileNotFoundError as error:
        pytest.skip(f"the shipped checkpoints are not available: {error}")
    for name in ("mnist_classifier.pt", "mnist_classifier.json", "mnist_triplet.json"):
        if not (models / name).exists():
            pytest.skip(f"{models / name} is missing (the shipped checkpoints are not there yet)")


def _traceback(error) -> str:
    return _ANSI.sub("", str(error))


@pytest.mark.parametrize("lab", LABS)
def test_released_notebook_stops_at_a_graded_function(lab, tmp_path):
    """Run the student version in fast mode, cell by cell, from a copy of notebooks/.

    The public test cells fail on the stubs (they report the NotImplementedError as failed checks);
    apart from them, the first error must be the NotImplementedError of a graded function.
    """
    require_data_and_models(lab)
    workdir = tmp_path / "notebooks"
    shutil.copytree(RELEASE_DIR, workdir)
    nb = nbformat.read(workdir / f"{lab}.ipynb", as_version=4)
    graded = {nbgrader(c)["grade_id"] for c in solution_cells(nb)}
    _, errors = notebooks.run_notebook(nb, workdir, timeout=600, tolerate=is_test_cell)
    assert errors, "the released notebook ran without any error"
    for index, cell, error in errors[:-1]:  # tolerated: failed public checks of a stub
        assert is_test_cell(cell)
        assert error.ename in ("AssertionError", "NotImplementedError"), f"cell {index}: {error.ename}"
        assert "NotImplementedError" in _traceback(error), f"cell {index} failed for another reason"
    index, cell, error = errors[-1]
    assert not is_test_cell(cell), "every public test cell failed, but nothing else reached a stub"
    assert error.ename == "NotImplementedError", f"cell {index} ({cell.id}): {error.ename}: {error.evalue}"
    text = _traceback(error)
    assert any(re.search(rf"\bin {name}\b", text) for name in graded), text


@pytest.mark.parametrize("lab", LABS)
def test_reference_solutions_obey_the_rules_of_the_checks(lab):
    """The source notebook runs its public test cells on the reference solutions: the checks must accept them."""
    from labtools.checks.submission import policy_violations

    for cell in solution_cells(committed_source(lab)):
        problems = policy_violations(notebooks.strip_solution_markers(cell.source))
        assert not problems, f"{lab}: the reference {nbgrader(cell)['grade_id']} is refused: {problems}"
