"""The check engine: extraction, the static rules, public checks in-process and in the sandbox."""

import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent / "submissions"))
import build  # noqa: E402

from autograder.paths import COURSE_DIR, RELEASE_DIR
from labtools import labs  # noqa: E402
from labtools.checks import (  # noqa: E402
    SubmissionError, extract_submission, loop_violations, policy_violations, run_public_checks,
)

HOSTILE = Path(__file__).parent / "submissions" / "hostile"


@pytest.mark.parametrize("content, words", [
    (b"not json", "not valid JSON"), (b'{"a": 1}', "not a Jupyter notebook"),
    (b'{"nbformat": 3, "worksheets": []}', "version"), (b'{"nbformat": 4, "cells": []}', "no cells"),
])
def test_unreadable_notebooks_say_why(tmp_path, content, words):
    path = tmp_path / "lab1_retrieval.ipynb"
    path.write_bytes(content)
    with pytest.raises(SubmissionError, match=words):
        extract_submission(path, "lab1_retrieval")


def test_extraction_keeps_definitions_only_and_survives_lost_metadata(tmp_path):
    nb = build.student_notebook("lab1_retrieval")
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "distances":
            cell.metadata = {}
            cell.source += "\nwhile True:\n    pass\ntrain(net)\nX = 3\n"
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    source = extract_submission(path, "lab1_retrieval")
    assert "def distances" in source and "while True" not in source and "train(net)" not in source
    assert "X = 3" in source and "import torch" in source


def test_static_rules():
    assert policy_violations("import sklearn.metrics\n")
    assert policy_violations("def f():\n    import sys\n")
    assert policy_violations("def f():\n    return eval('1')\n")
    assert not policy_violations("import os.path\ndef f(p):\n    return os.path.exists(p)\n")
    # the kit's own provided search, losses and metrics would do graded work: refused like pml
    for source in ("from labtools.neighbors import nearest\n", "from labtools import losses\n",
                   "import labtools.metrics as m\n"):
        assert any("library implementation" in p for p in policy_violations(source)), source
    assert not policy_violations("from labtools.data import digits_dataset\n")
    # torch's C module could switch off the counters of the loop-free and memory checks
    assert policy_violations("import torch\ndef f(x):\n    with torch._C.DisableTorchFunction():\n        return x\n")
    # tracemalloc measures the memory checks' numpy and Python allocations
    assert policy_violations("def f(x):\n    import tracemalloc\n    tracemalloc.stop()\n")
    src = "def g(x):\n    return [y for y in x]\ndef f(x):\n    return g(x)\n"
    assert any("helper g" in p for p in loop_violations(src, "f"))
    assert loop_violations("def f(x):\n    return f(x)\n", "f")
    assert not loop_violations("def f(x):\n    for a in x:\n        pass\n", "f", allowed_for=1)


def test_public_checks_in_process_pass_for_the_reference(capsys):
    from autograder.labs.lab1_retrieval.reference import distances, evaluate_AP, evaluate_mAP

    for f in (distances, evaluate_AP, evaluate_mAP):
        run_public_checks("lab1_retrieval", f.__name__, f)
    assert "PASS" in capsys.readouterr().out


def test_public_checks_in_process_report_mistakes():
    namespace = {}
    exec(compile(build.mistake_code("lab1_retrieval", "distances_loop")["distances"], "<cell>", "exec"), namespace)
    with pytest.raises(AssertionError, match="distances.vectorized"):
        run_public_checks("lab1_retrieval", "distances", namespace["distances"])


def _grade(tmp_path, lab, replace):
    from autograder.grading.trusted import grade_submission

    path = build.write_submission(tmp_path / "s", lab, replace=replace)
    result = grade_submission(path, lab, workroot=tmp_path)
    return {c["check"]: c for c in result["checks"]}


def _own_lost_checks(name):
    """The checks Lab 1's mistake ``name`` loses on the functions it changes (not on their callers)."""
    changed = build.mistake_code("lab1_retrieval", name)
    return {c for c in build.mistakes("lab1_retrieval")[name].lost if c.split(".")[0] in changed}


@pytest.mark.parametrize("kind, name, failing", [
    ("mistakes", "ap_off_by_one", _own_lost_checks("ap_off_by_one")),
    ("mistakes", "distances_loop", _own_lost_checks("distances_loop")),
    ("hostile", "infinite_loop", {"distances."}),
    ("hostile", "memory_bomb", {"distances."}),
    ("hostile", "exits", {"distances.", "evaluate_AP."}),
    # NaN / wrong-shape values lose every value check, but the functions are loop-free: the
    # "vectorized" checks (structure only) keep their points.
    ("hostile", "nan", {"distances.shape_dtype", "distances.identical_opposite", "distances.symmetric",
                        "distances.hidden_fixed", "distances.hidden_random", "evaluate_AP.perfect_ranking",
                        "evaluate_AP.hand_example", "evaluate_AP.range", "evaluate_AP.hidden_fixed",
                        "evaluate_AP.hidden_random"}),
    ("hostile", "reads_reference", {"distances."}),
    ("hostile", "writes_course", {"distances."}),
    ("hostile", "flood", set()),
])
def test_sandboxed_grading_of_mistakes_and_hostile_code(tmp_path, kind, name, failing):
    if kind == "mistakes":
        code = build.mistake_code("lab1_retrieval", name)
    else:
        code = build.snippet_functions(HOSTILE / f"{name}.py")
    checks = _grade(tmp_path, "lab1_retrieval", code)
    lost = {cid for cid, c in checks.items() if c["points"] < c["max_points"]}
    lost.discard("evaluate_mAP.hidden_classifier")  # needs MNIST; covered separately
    expected = {cid for cid in checks if any(cid == f or (f.endswith(".") and cid.startswith(f)) for f in failing)}
    affected = {cid for cid in lost if cid.startswith("evaluate_mAP.")}  # evaluate_mAP calls the others
    assert lost - affected == expected, (lost, expected)
    assert not (COURSE_DIR / "pwned.pt").exists()




def test_rule_violation_costs_only_the_function_and_its_callers():
    from labtools.checks.submission import scoped_violations

    src = ("import torch\nimport subprocess\n"
           "def distances(q, x):\n    return (2 - 2 * q @ x.T).clamp_min(0)\n"
           "def evaluate_AP(d, l, q):\n    subprocess.run(['true'])\n    return d\n"
           "def evaluate_mAP(net, ds, num_queries=100):\n    return evaluate_AP(1, 2, 3)\n")
    refused, clean = scoped_violations(src)
    assert set(refused) == {"subprocess", "evaluate_AP", "evaluate_mAP"}
    assert "import subprocess" not in clean and "def distances" in clean


def test_violation_in_one_function_keeps_the_other_checks(tmp_path):
    code = build.reference_code()["evaluate_AP"]
    head, _, body = code.partition("):\n")
    replace = {"evaluate_AP": head + "):\n    eval('1')\n" + body}
    checks = _grade(tmp_path, "lab1_retrieval", replace)
    lost = {cid for cid, c in checks.items() if c["points"] < c["max_points"]}
    assert {cid for cid in lost if cid.startswith("evaluate_AP.")} == {c for c in checks if c.startswith("evaluate_AP.")}
    assert all(cid.startswith(("evaluate_AP.", "evaluate_mAP.")) for cid in lost), lost
    assert "breaks the rules" in checks["evaluate_AP.hidden_fixed"]["message"]


@pytest.mark.parametrize("lab, name, function", [
    ("lab2_triplet", "hinge_sign", "triplet_loss"),
    ("lab1_retrieval", "map_query_included", "evaluate_mAP"),
    ("lab2_triplet", "map_query_included", None),  # evaluate_mAP is not graded in Lab 2
])
def test_more_mistakes_lose_exactly_their_function_checks(tmp_path, lab, name, function):
    from autograder.grading.trusted import grade_submission

    owner = next(owner for owner in labs.lab_ids() if name in build.mistakes(owner))  # Lab 1's, also in Lab 2
    path = build.write_submission(tmp_path / "s", lab, replace=build.mistake_code(owner, name))
    result = grade_submission(path, lab, workroot=tmp_path)
    lost = {c["check"] for c in result["checks"] if c["points"] < c["max_points"]}
    lost -= {c["check"] for c in result["checks"] if c["function"] == "checkpoint"}  # no triplet_net.pt here
    lost.discard("evaluate_mAP.hidden_classifier") if function is None else None
    if function is None:
        assert not lost, lost
    else:  # the function's checks, and those of its callers (train_triplets trains with triplet_loss)
        callers = {"triplet_loss": ("train_triplets.",), "evaluate_mAP": ()}[function]
        assert lost and all(c.startswith((function + ".",) + callers) for c in lost), lost
        assert any(c.startswith(function + ".hidden") for c in lost), lost


def test_missing_data_is_the_graders_error_not_the_students(tmp_path, monkeypatch):
    """Checks the grader cannot prepare score 0 flagged ``grader_error`` (the CLI then exits 3)."""
    from autograder.grading.trusted import grade_notebook_dict
    from labtools import data

    from autograder.grading import hidden

    monkeypatch.setenv("LABTOOLS_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(data, "STAGING_ROOT", tmp_path / "staging")
    nb = build.student_notebook("lab1_retrieval")
    hidden.mnist_test.cache_clear()  # MNIST loaded by an earlier test would hide the missing files
    try:
        results = grade_notebook_dict(nb, "lab1_retrieval", tmp_path)
    finally:
        hidden.mnist_test.cache_clear()
    flagged = {c["check"] for c in results["checks"] if c["grader_error"]}
    assert "evaluate_mAP.hidden_classifier" in flagged
    assert all(c["points"] == c["max_points"] for c in results["checks"] if not c["grader_error"])


# ----------------------------------------------------------------------------------------------
# line numbers name the line of the cell, as the student sees it


def _solution_meta(grade_id):
    return {"nbgrader": {"grade": False, "grade_id": grade_id, "locked": False, "schema_version": 3,
                         "solution": True, "task": False}}


#: Cells of a notebook whose distances has a loop, whose evaluate_AP imports subprocess and whose
#: evaluate_mAP raises: each line marked "# line k" is line k of its cell.
_CELLS = [
    ("setup", "%matplotlib inline\nimport torch\n\n# numbers\nimport math\n"),
    (None, "x = 1\nprint(x)\n"),
    ("distances", "# Euclidean distances\n%time\n\nimport torch\n\ndef helper(x):\n    return x\n\n\n"
                  "def distances(query, items):\n    '''Squared distances [Q, N].'''\n"
                  "    out = torch.zeros(len(query), len(items))\n"
                  "    for i in range(len(query)):  # line 13\n"
                  "        out[i] = ((query[i] - items) ** 2).sum(1)\n    return helper(out)\n"),
    ("evaluate_AP", "\n\n# AP of one query\ndef evaluate_AP(dist, labels, query_label):\n\n"
                    "    import subprocess  # line 6\n    return dist\n"),
    ("evaluate_mAP", "!ls\r\ndef evaluate_mAP(net, dataset, num_queries=100):\r\n    x = 1\r\n"
                     "    raise ValueError('not yet')  # line 4\r\n"),
]


def _line_notebook():
    cells = [nbformat.v4.new_markdown_cell("# Lab 1")]
    for grade_id, code in _CELLS:
        cell = nbformat.v4.new_code_cell(code)
        if grade_id not in (None, "setup"):
            cell.metadata = _solution_meta(grade_id)
        cells.append(cell)
    return nbformat.v4.new_notebook(cells=cells)


def _marked_line(code):
    return next(k for k, line in enumerate(code.replace("\r\n", "\n").split("\n"), 1) if "# line" in line)


def test_extracted_lines_know_their_cell_and_line():
    from labtools.checks import extract_from_notebook
    from labtools.checks.submission import line_of

    source, _ = extract_from_notebook(_line_notebook(), "lab1_retrieval")
    lines = source.split("\n")
    for grade_id, code in _CELLS[2:]:
        k = _marked_line(code)
        text = code.replace("\r\n", "\n").split("\n")[k - 1].split("  #")[0]  # a last line ends at its code
        n = next(i for i, line in enumerate(lines, 1) if line.startswith(text))
        assert line_of(source, n) == f"line {k} of the cell defining " + (
            "distances and helper" if grade_id == "distances" else grade_id)
    assert line_of(source, lines.index("import math") + 1) == "line 5 of the cell starting '%matplotlib inline'"
    assert loop_violations(source, "distances") == ["line 13 of the cell defining distances and helper: a for loop"]
    assert policy_violations(source) == ["line 6 of the cell defining evaluate_AP: imports subprocess, which the "
                                         "checks do not allow"]
    loop = lines.index("    for i in range(len(query)):  # line 13") + 1
    assert loop_violations(str(source), "distances") == [f"line {loop}: a for loop"]  # a plain string: its own lines


def test_sandboxed_messages_name_the_line_of_the_cell(tmp_path):
    from labtools.checks import check_source, extract_from_notebook

    source, _ = extract_from_notebook(_line_notebook(), "lab1_retrieval")
    results = {r.check.id: r.message for r in check_source(source, "lab1_retrieval", workroot=tmp_path)}
    assert results["distances.vectorized"] == ("use tensor operations instead of Python loops: line 13 of the cell "
                                               "defining distances and helper: a for loop")
    assert results["evaluate_AP.hand_example"] == ("evaluate_AP breaks the rules of the checks: line 6 of the cell "
                                                   "defining evaluate_AP: imports subprocess, which the checks do "
                                                   "not allow")
    assert results["evaluate_mAP.shapes"] == ("the call failed: ValueError: not yet (line 4 of the cell defining "
                                              "evaluate_mAP)")


def test_in_process_messages_name_the_line_of_the_cell():
    """run_public_checks from a notebook: IPython compiles each cell as a file of its own."""
    import linecache

    namespace = {}
    for number, (grade_id, code) in enumerate(_CELLS):
        name = f"/tmp/ipykernel_4242/{1000 + number}.py"
        code = "\n".join("None" if line.startswith(("%", "!")) else line  # what IPython runs for a magic
                         for line in code.replace("\r\n", "\n").split("\n"))
        linecache.cache[name] = (len(code), None, [line + "\n" for line in code.split("\n")], name)
        exec(compile(code.replace("print(x)", "pass"), name, "exec"), namespace)
    expected = {"distances": "distances.vectorized: use tensor operations instead of Python loops: line 13 of the "
                             "cell defining distances: a for loop",
                "evaluate_AP": "evaluate_AP.perfect_ranking: evaluate_AP breaks the rules of the checks: line 6 of "
                               "the cell defining evaluate_AP: imports subprocess",
                "evaluate_mAP": "evaluate_mAP.shapes: the call failed: ValueError: not yet (line 4 of the cell "
                                "defining evaluate_mAP)"}
    for name, message in expected.items():
        with pytest.raises(AssertionError) as failed:
            run_public_checks("lab1_retrieval", name, namespace[name])
        assert message in str(failed.value), str(failed.value)


def test_a_dropped_statement_keeps_the_line_numbers_of_the_rest():
    from labtools.checks.submission import scoped_violations

    src = "import torch\nimport subprocess\n\n\ndef f(x):\n    return x\n"
    refused, clean = scoped_violations(src)
    assert set(refused) == {"subprocess"} and type(clean) is str
    assert clean.split("\n")[1] == "" and clean.split("\n")[4] == "def f(x):"


def test_nbgrader_metadata_of_the_wrong_type_is_ignored_not_a_grader_error(tmp_path):
    """A grade_id that is a number or a list (hand-edited metadata) must not break the grader."""
    import nbformat

    from autograder.grading.intake import repair_notebook
    from autograder.grading.trusted import grade_submission

    path = build.write_submission(tmp_path / "s", "lab1_retrieval")
    nb = nbformat.read(path, as_version=4)
    solution = next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "evaluate_AP")
    test = next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "test_distances")
    solution.metadata["nbgrader"]["grade_id"] = 5
    test.metadata["nbgrader"]["grade_id"] = ["test_distances"]
    nbformat.write(nb, path)
    result = grade_submission(path, "lab1_retrieval", workroot=tmp_path)
    assert not any(c["grader_error"] for c in result["checks"])
    assert all(c["points"] == c["max_points"] for c in result["checks"] if c["check"].startswith("evaluate_AP."))
    release = RELEASE_DIR / "lab1_retrieval.ipynb"
    notes = repair_notebook(path, release)
    assert any("unknown or duplicate nbgrader metadata" in n for n in notes)
