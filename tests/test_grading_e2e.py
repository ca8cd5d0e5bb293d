"""End to end: ``python -m autograder grade`` (a subprocess) on sample submissions built at test time.

One grade run per lab grades every sample student (the solution, the lab's typical mistakes,
``build.mistakes``, and, for Lab 1, the hostile suite at notebook level). Each student's expected
result is the set of checks it loses; the run must exit 0 and write grades.csv, the feedback
pages, the gradebook (consistent with grades.csv) and the histogram. Skipped without MNIST.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

sys.path.insert(0, str(Path(__file__).parent / "submissions"))
import build  # noqa: E402
from gradebook_rows import lost, mnist_available, read_grades  # noqa: E402

from autograder.paths import REPO
from labtools import labs  # noqa: E402

COURSE = REPO / "autograder" / "course"
HOSTILE = Path(__file__).parent / "submissions" / "hostile"


pytestmark = [
    pytest.mark.skipif(not mnist_available(), reason="no MNIST under LABTOOLS_DATA (set it to the datasets root)"),
    pytest.mark.skipif(not (COURSE / "source" / "lab1_retrieval" / "lab1_retrieval.ipynb").is_file(),
                       reason="no source notebooks in autograder/course/source"),
]


def hostile(name: str) -> dict[str, str]:
    return build.snippet_functions(HOSTILE / f"{name}.py")


def notebook(lab: str, replace=None):
    return build.student_notebook(lab, replace, course=COURSE)


def _index(nb, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)


def with_cell(nb, code: str, before: str):
    """``nb`` with a plain code cell holding ``code`` inserted before the cell ``before``."""
    nb.cells.insert(_index(nb, before), new_code_cell(code))
    return nb


def write(root: Path, student: str, nb, name: str | None = None, lab: str = "lab1_retrieval") -> Path:
    folder = root / student
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{lab}.ipynb")
    nbformat.write(nb, path)
    return folder


def run_grade(lab: str, submissions: Path, out: Path, time_limit: int = 100) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "autograder", "grade", lab, str(submissions), "--out", str(out),
                           "--jobs", "2", "--time-limit", str(time_limit)], cwd=out.parent, env=env,
                          capture_output=True, text=True, timeout=1200)


# ----------------------------------------------------------------------------------------------
# Lab 1

DIST = {f"distances.{c}" for c in ("shape_dtype", "identical_opposite", "symmetric", "vectorized", "hidden_fixed",
                                    "hidden_random")}
AP_VALUES = {f"evaluate_AP.{c}" for c in ("perfect_ranking", "hand_example", "hidden_fixed", "hidden_random")}
AP = AP_VALUES | {"evaluate_AP.range", "evaluate_AP.vectorized"}
MAP = {"evaluate_mAP.shapes", "evaluate_mAP.hidden_fixed", "evaluate_mAP.hidden_classifier"}
ALL1 = DIST | AP | MAP


def lab1_students(root: Path) -> dict[str, tuple]:
    """student -> (exactly lost, may also lose, a word of some lost check's message)."""
    mistakes = build.mistakes("lab1_retrieval")
    off = build.mistake_code("lab1_retrieval", "ap_off_by_one")
    cases = {}

    def add(student, nb, exact, maybe=frozenset(), word="", name=None):
        write(root, student, nb, name=name)
        cases[student] = (set(exact), set(maybe), word)

    add("solution", notebook("lab1_retrieval"), set())
    add("ap_off_by_one", notebook("lab1_retrieval", off), mistakes["ap_off_by_one"].lost, word="should have AP 1")
    add("distances_loop", notebook("lab1_retrieval", build.mistake_code("lab1_retrieval", "distances_loop")),
        mistakes["distances_loop"].lost, MAP, word="loop")
    add("map_query_included", notebook("lab1_retrieval", build.mistake_code("lab1_retrieval", "map_query_included")),
        mistakes["map_query_included"].lost, MAP)
    add("loop_in_function", notebook("lab1_retrieval", hostile("infinite_loop")), DIST | MAP,
        word="timed out")
    add("memory_bomb_in_function", notebook("lab1_retrieval", hostile("memory_bomb")), DIST | MAP)
    add("nan_and_wrong_shape", notebook("lab1_retrieval", hostile("nan")),
        (DIST | AP) - {"distances.vectorized", "evaluate_AP.vectorized"}, MAP)
    add("exits_in_function", notebook("lab1_retrieval", hostile("exits")),
        (DIST | AP) - {"distances.vectorized", "evaluate_AP.vectorized"}, MAP | {"distances.vectorized",
                                                                                "evaluate_AP.vectorized"})
    add("flood_in_function", notebook("lab1_retrieval", hostile("flood")), set())
    # a rule violation costs the function and its callers, not the whole submission
    code = build.reference_code()["distances"]
    head, _, body = code.partition("):\n")
    add("violation_in_distances", notebook("lab1_retrieval", {"distances": head + "):\n    eval('1')\n" + body}),
        DIST - {"distances.vectorized"}, MAP | {"distances.vectorized"}, word="breaks the rules")
    # hostile cells of the notebook: they never reach the trusted checks
    add("cell_os_exit", with_cell(notebook("lab1_retrieval"), "import os\nos._exit(1)", "test_distances"), set())
    add("cell_kills_kernel", with_cell(notebook("lab1_retrieval"),
                                       "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "test_evaluate_AP"),
        set())
    add("cell_infinite_loop", with_cell(notebook("lab1_retrieval"), "while True:\n    pass", "test_evaluate_mAP"),
        set())
    # sys.exit, a memory bomb, a flood of output and a DeprecationWarning on stderr: nothing lost
    nb = notebook("lab1_retrieval")
    for code in ("import sys\nsys.exit(3)", "hog = torch.ones(1 << 36)", "for _ in range(2000):\n    print('x' * 5000)",
                 "import sys, warnings\nwarnings.warn('old API', DeprecationWarning)\n"
                 "print('DeprecationWarning: old API', file=sys.stderr)"):
        with_cell(nb, code, "test_distances")
    add("cell_exit_memory_flood_warning", nb, set())
    # monkeypatching torch.allclose and the checker, overriding showtraceback: the mistake still costs
    add("patches_and_overrides", with_cell(
        notebook("lab1_retrieval", off),
        "torch.allclose = lambda *a, **k: True\ntorch.isclose = lambda *a, **k: True\n"
        "import labtools.checks, labtools.checks.engine\n"
        "labtools.checks.run_public_checks = lambda *a, **k: print('[PASS] everything')\n"
        "labtools.checks.engine.run_public_checks = labtools.checks.run_public_checks\n"
        "get_ipython().showtraceback = lambda *a, **k: None", "test_distances"), mistakes["ap_off_by_one"].lost,
        word="should have AP 1")
    # locked cells deleted or edited
    nb = notebook("lab1_retrieval", off)
    cell = nb.cells[_index(nb, "test_evaluate_AP")]
    cell.source = "print('[PASS] evaluate_AP: 1.5/1.5 points')\n1.5"
    cell.metadata["nbgrader"]["points"] = 100
    add("edited_test_cell", nb, mistakes["ap_off_by_one"].lost)
    nb = notebook("lab1_retrieval")
    del nb.cells[_index(nb, "test_distances")]
    nb.cells[_index(nb, "test_evaluate_mAP")].metadata = {}
    nb.cells[_index(nb, "distances")].metadata["nbgrader"]["grade_id"] = "my_distances"
    add("deleted_and_edited_cells", nb, set())
    # files
    add("renamed_notebook", notebook("lab1_retrieval"), set(), name="Lab 1 (copy).ipynb")
    (root / "corrupt_notebook").mkdir()
    (root / "corrupt_notebook" / "lab1_retrieval.ipynb").write_text('{"cells": [')
    cases["corrupt_notebook"] = (ALL1, set(), "not valid JSON")
    (root / "no_notebook").mkdir()
    (root / "no_notebook" / "notes.txt").write_text("sorry")
    cases["no_notebook"] = (ALL1, set(), "no notebook")
    return cases


@pytest.fixture(scope="module")
def lab1(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab1")
    cases = lab1_students(root / "submissions")
    out = root / "out"
    run = run_grade("lab1_retrieval", root / "submissions", out)
    return run, out, cases


def test_lab1_run_completes_and_writes_everything(lab1):
    run, out, cases = lab1
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    assert "graded" in run.stdout and "solution" in run.stdout
    rows = read_grades(out)
    assert set(rows) == set(cases)
    for student, checks in rows.items():
        assert set(checks) - {"TOTAL"} == ALL1, student
    assert (out / "histogram.png").stat().st_size > 1000
    assert not (COURSE / "gradebook.db").exists() and not (COURSE / "submitted").exists()
    assert not (COURSE / "autograded").exists() and not (COURSE / "feedback").exists()


@pytest.mark.parametrize("student", [
    "solution", "ap_off_by_one", "distances_loop", "map_query_included", "loop_in_function",
    "memory_bomb_in_function", "nan_and_wrong_shape", "exits_in_function", "flood_in_function",
    "violation_in_distances", "cell_os_exit", "cell_kills_kernel", "cell_infinite_loop",
    "cell_exit_memory_flood_warning", "patches_and_overrides", "edited_test_cell", "deleted_and_edited_cells",
    "renamed_notebook", "corrupt_notebook", "no_notebook",
])
def test_lab1_student_is_graded_correctly(lab1, student):
    run, out, cases = lab1
    exact, maybe, word = cases[student]
    checks = read_grades(out)[student]
    got = lost(checks)
    assert exact <= got <= exact | maybe, (student, sorted(got), {c: checks[c]["message"] for c in got})
    if word:
        assert any(word in checks[c]["message"] for c in got) or word in checks["TOTAL"]["message"], \
            {c: checks[c]["message"] for c in got}
    total = sum(float(r["points"]) for c, r in checks.items() if c != "TOTAL")
    assert float(checks["TOTAL"]["points"]) == pytest.approx(total, abs=1e-6)
    if not got:
        assert total == pytest.approx(4.0)
    if student == "solution":  # a faithful submission gets no repair notes
        assert checks["TOTAL"]["message"] == ""
    if student == "renamed_notebook":
        assert "not lab1_retrieval.ipynb" in checks["TOTAL"]["message"]


def test_lab1_gradebook_matches_grades_csv(lab1):
    import warnings

    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    run, out, cases = lab1
    rows = read_grades(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)
        with Gradebook(f"sqlite:///{out / 'gradebook.db'}", "metric-lab") as gb:
            for student, checks in rows.items():
                submission = gb.find_submission("lab1_retrieval", student)
                # the automatic points are the CSV's; the report's answer cells wait for their manual grade
                assert submission.score == pytest.approx(float(checks["TOTAL"]["points"]), abs=1e-6), student
                assert submission.max_score == pytest.approx(labs.lab("lab1_retrieval").max_score) == 4.0 + 1.5


def test_lab1_feedback_shows_trusted_messages_and_no_hidden_tests(lab1):
    run, out, cases = lab1
    for student in cases:
        pages = list((out / "feedback" / student).glob("*.html"))
        assert pages, student
        text = pages[0].read_text(errors="replace")
        assert "BEGIN HIDDEN TESTS" not in text and "autograder.labs" not in text, student
    text = next((out / "feedback" / "ap_off_by_one").glob("*.html")).read_text()
    assert "evaluate_AP.hidden_fixed" in text and "should have AP 1" in text
    text = next((out / "feedback" / "patches_and_overrides").glob("*.html")).read_text()
    assert "evaluate_AP.perfect_ranking" in text
    # nbgrader itself processed the notebooks whose locked cells were deleted or edited (repaired metadata)
    for student in ("deleted_and_edited_cells", "edited_test_cell", "cell_kills_kernel", "cell_infinite_loop"):
        text = next((out / "feedback" / student).glob("*.html")).read_text()
        assert "Score:" in text and "test_distances" in text, student
    assert "restored" in read_grades(out)["deleted_and_edited_cells"]["TOTAL"]["message"]


# ----------------------------------------------------------------------------------------------
# Lab 2

TRIPLET_VALUES = {f"triplet_loss.{c}" for c in ("hand_example", "hinge_sign", "zero_when_separated", "hidden_fixed",
                                                "hidden_random")}


CHECKPOINT = {"checkpoint.loads", "checkpoint.hidden_map_90", "checkpoint.hidden_map_95", "checkpoint.hidden_map_98"}


def own_checkpoint(path: Path, course: Path) -> Path:
    """A good network that is not a copy of the course's: mnist_triplet fine-tuned by the repository's
    training loop for 100 SGD steps (10,000 images, lr 0.02) with seed 1, saved as train_triplets
    saves it. About 15 s on 2 cores; 0.028 from mnist_triplet by the grader's measure (its threshold
    of a copy is 0.01) and mAP 0.983 on the first 100 queries (the last step asks for 0.98)."""
    from torch.utils.data import TensorDataset

    from autograder.checkpoints import triplet
    from autograder.training import fit
    from labtools.data import train_val_split
    from labtools.models import load_checkpoint, save_checkpoint

    train_set, _ = train_val_split("MNIST", download=False)
    net, _ = load_checkpoint(course)
    history = fit(net, TensorDataset(*(t[:10_000] for t in train_set.tensors)), triplet, loss_name="triplet",
                  epochs=1, lr=0.02, seed=1, progress=False)
    return save_checkpoint(path, net, dataset="MNIST", loss="triplet", seed=1, epochs=1, history=history)


def other_architecture(path: Path, own: Path) -> Path:
    """The network of ``own`` inside a Lab 4 EmbeddingNet whose embedding layer is the identity: the
    same features, hence the same mAP, but not the lab's ConvNet."""
    import torch

    from labtools.models import EmbeddingNet, load_checkpoint, read_checkpoint, save_checkpoint

    convnet, record = load_checkpoint(own)
    net = EmbeddingNet(sub_centers=0)
    net.backbone.load_state_dict(convnet.state_dict())
    with torch.no_grad():
        net.embedding.weight.copy_(torch.eye(256))
        net.embedding.bias.zero_()
    return save_checkpoint(path, net, dataset="MNIST", loss="triplet", seed=1, epochs=record["epochs"],
                           history=read_checkpoint(own)["history"])


def contradicting_history(path: Path, own: Path) -> Path:
    """The weights and one-epoch history of ``own``, saved as if trained for 100 epochs."""
    from labtools.models import load_checkpoint, save_checkpoint

    net, record = load_checkpoint(own)
    return save_checkpoint(path, net, dataset="MNIST", loss="triplet", seed=1, epochs=100, history=record["history"])


@pytest.fixture(scope="module")
def lab2(tmp_path_factory):
    from labtools.paths import models_dir

    course = Path(models_dir()) / "mnist_triplet.pt"
    if not course.is_file():
        pytest.skip("no models/mnist_triplet.pt to fine-tune")
    root = tmp_path_factory.mktemp("lab2")
    own = own_checkpoint(root / "own.pt", course)
    subs = root / "submissions"
    cases = {}
    for student, replace, checkpoint in [
        ("solution", None, own),
        ("hinge_sign", build.mistake_code("lab2_triplet", "hinge_sign"), own),
        ("no_checkpoint", None, None),
        ("corrupt_checkpoint", None, "corrupt"),
        ("course_checkpoint", None, course),  # the course's own network, as the bundle shipped it before
        ("other_architecture", None, other_architecture(root / "embedding_net.pt", own)),
        ("contradicting_history", None, contradicting_history(root / "history.pt", own)),
    ]:
        folder = write(subs, student, notebook("lab2_triplet", replace), lab="lab2_triplet")
        if checkpoint == "corrupt":
            (folder / "triplet_net.pt").write_bytes(b"not a checkpoint")
        elif checkpoint is not None:
            shutil.copy(checkpoint, folder / "triplet_net.pt")
        cases[student] = folder
    digests = {s: (f / "triplet_net.pt").read_bytes() for s, f in cases.items() if (f / "triplet_net.pt").exists()}
    out = root / "out"
    run = run_grade("lab2_triplet", subs, out, time_limit=300)
    return run, out, cases, digests


def test_lab2_grades(lab2):
    run, out, cases, digests = lab2
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    rows = read_grades(out)
    assert set(rows) == set(cases)
    assert lost(rows["solution"]) == set(), {c: rows["solution"][c]["message"] for c in lost(rows["solution"])}
    assert float(rows["solution"]["TOTAL"]["points"]) == pytest.approx(6.0)
    assert rows["solution"]["TOTAL"]["message"] == ""
    got = lost(rows["hinge_sign"])
    assert TRIPLET_VALUES <= got <= TRIPLET_VALUES | {"train_triplets.hidden_lowers_loss"}, got
    checkpoint = {c for c in rows["solution"] if c.startswith("checkpoint.")}
    assert checkpoint == CHECKPOINT
    assert checkpoint <= lost(rows["no_checkpoint"])
    assert checkpoint <= lost(rows["corrupt_checkpoint"])
    assert any("triplet_net.pt" in rows["no_checkpoint"][c]["message"] for c in checkpoint)
    # the submitted checkpoint is never touched (the fast training cell writes triplet_net.fast.pt)
    for student, data in digests.items():
        assert (cases[student] / "triplet_net.pt").read_bytes() == data
    assert (out / "histogram.png").is_file() and (out / "gradebook.db").is_file()
    for student in cases:
        assert list((out / "feedback" / student).glob("*.html")), student


@pytest.mark.parametrize("student, words", [
    ("course_checkpoint", "triplet_net.pt has the same weights as the course's own network mnist_triplet.pt: "
                          "submit the network your train_triplets trained"),
    ("other_architecture", "triplet_net.pt holds a network of architecture 'EmbeddingNet', not the lab's ConvNet"),
    ("contradicting_history", "triplet_net.pt records 100 epochs of training but its history holds 1 per-epoch "
                              "losses"),
    ("corrupt_checkpoint", "triplet_net.pt is not a checkpoint that labtools.models.load_checkpoint can read"),
])
def test_lab2_refused_checkpoints_earn_no_checkpoint_point(lab2, student, words):
    """Every checkpoint step is lost with a message in the student's terms; the code's points stay."""
    run, out, cases, _ = lab2
    checks = read_grades(out)[student]
    assert lost(checks) == CHECKPOINT, {c: checks[c]["message"] for c in lost(checks)}
    assert float(checks["TOTAL"]["points"]) == pytest.approx(6.0 - 3.0)
    for check in CHECKPOINT:
        message = checks[check]["message"]
        assert words in message, message
        assert str(out.parent) not in message and "weights_only" not in message and "Traceback" not in message
    if student == "course_checkpoint":  # the student reads why in the feedback
        assert "own network mnist_triplet.pt" in next((out / "feedback" / student).glob("*.html")).read_text()


# ----------------------------------------------------------------------------------------------
# Lab 3

def grade_samples(lab, tmp_path_factory):
    """Grade one notebook per sample student of ``lab``: the solution and each of its typical mistakes
    (``build.mistakes(lab)``). Returns (the grader's run, its output folder, {student: the checks it
    must lose})."""
    if not (COURSE / "source" / lab / f"{lab}.ipynb").is_file():
        pytest.skip(f"no {lab} source notebook")
    expected = {"solution": set(), **{name: mistake.lost for name, mistake in build.mistakes(lab).items()}}
    root = tmp_path_factory.mktemp(lab)
    subs = root / "submissions"
    for student in expected:
        replace = None if student == "solution" else build.mistake_code(lab, student)
        write(subs, student, notebook(lab, replace), lab=lab)
    return run_grade(lab, subs, root / "out", time_limit=300), root / "out", expected


def check_samples(lab, graded):
    """Every sample loses exactly its checks (and their points); the solution needs no repair.
    Returns the grade rows."""
    run, out, expected = graded
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    rows = read_grades(out)
    assert set(rows) == set(expected)
    checks = set(rows["solution"]) - {"TOTAL"}
    assert {c.split(".")[0] for c in checks} == set(labs.lab(lab).test_points)  # every graded function's checks ran
    for student, lost_checks in expected.items():
        assert lost_checks <= checks, student
        got = lost(rows[student])
        assert got == lost_checks, (student, {c: rows[student][c]["message"] for c in got})
        max_lost = sum(float(rows[student][c]["max_points"]) for c in got)
        assert float(rows[student]["TOTAL"]["points"]) == pytest.approx(sum(labs.lab(lab).test_points.values()) - max_lost), student
    assert rows["solution"]["TOTAL"]["message"] == ""  # a faithful notebook needs no repair
    return rows


def feedback(out, student) -> str:
    return next((out / "feedback" / student).glob("*.html")).read_text()


@pytest.fixture(scope="module")
def lab3(tmp_path_factory):
    return grade_samples("lab3_smoothap", tmp_path_factory)


def test_lab3_grades_the_solution_and_each_mistake_exactly(lab3):
    check_samples("lab3_smoothap", lab3)
    page = feedback(lab3[1], "query_included")
    assert "count as its own positive" in page  # the check's message reaches the student
    assert "hidden_fixed" in page and "load_outputs" not in page and "reference_output" not in page


# ----------------------------------------------------------------------------------------------
# Lab 4


@pytest.fixture(scope="module")
def lab4(tmp_path_factory):
    return grade_samples("lab4_beyond", tmp_path_factory)


def test_lab4_grades_the_solution_and_each_mistake_exactly(lab4):
    check_samples("lab4_beyond", lab4)
    page = feedback(lab4[1], "recall_query_included")
    assert "recall_at_k.leave_one_out" in page and "leave it out of its own neighbours" in page
    assert "hidden_fixed" in page and "load_outputs" not in page and "reference_output" not in page
    # the NormSoftmax class went through extraction, the sandbox and nbgrader like a function
    assert "NormSoftmax.layer_norm" in feedback(lab4[1], "head_without_layer_norm")


# ----------------------------------------------------------------------------------------------
# Lab 5


@pytest.fixture(scope="module")
def lab5(tmp_path_factory):
    return grade_samples("lab5_dvml", tmp_path_factory)


def test_lab5_grades_the_solution_and_each_mistake_exactly(lab5):
    rows = check_samples("lab5_dvml", lab5)
    # a mistake in a helper costs the graded function that calls it, and the feedback says which check
    assert {c for c in lost(rows["kl_summed_over_the_batch"]) if c.startswith("dvml_loss.")}
    page = feedback(lab5[1], "hard_negatives_too")
    assert "semihard_triplets.hand_example" in page and "a semi-hard negative is farther than the positive" in page
    assert "in the helper semihard_triplets" in feedback(lab5[1], "semihard_loop")
    assert "hidden_fixed" in page and "load_outputs" not in page and "reference_output" not in page
