"""The similarity report: a copied and disguised function is flagged, independent solutions and the
released skeleton are not, identical checkpoints are, and hostile submissions end in notes.

The class is built at test time from the reference (``tests/submissions/build.py``) and the mistakes
table: ada submits the reference's ``triplet_loss``; bob copies it and disguises it (names,
formatting, comments, two pairs of independent statements swapped); cy and dee solve it each in a
way of their own; eve submits the ``hinge_sign`` mistake; sam submits the released notebook
unchanged. Every other function is the released stub.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import torch

from autograder.paths import REPO
from autograder.__main__ import main
from autograder.similarity import compare, similarity
from autograder.similarity.functions import source_functions
from autograder.similarity.pairs import FLAG_SCORE
from autograder.labs.lab2_triplet.copies import NEAR_COPY
from autograder.similarity.weights import course_weights, read_weights, weight_matches
from labtools.models import ConvNet, save_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent / "submissions"))
import build  # noqa: E402

LAB = "lab2_triplet"
RELEASE = REPO / "notebooks" / f"{LAB}.ipynb"
COURSE_TRIPLET = REPO / "models" / "mnist_triplet.pt"

#: cy: a loop over the anchors, the distances computed in place.
CY = '''def triplet_loss(features, labels, alpha=0.5, num_anchors=10):
    total = features.new_zeros(())
    for a in range(min(num_anchors, len(labels))):
        d = ((features - features[a]) ** 2).sum(dim=1)
        positive = labels == labels[a]
        positive[a] = False
        negative = labels != labels[a]
        hinge = d[positive][:, None] - d[negative][None, :] + alpha
        total = total + torch.relu(hinge).sum()
    return total
'''
#: dee: matrix products and explicit [A, B, B] masks.
DEE = '''def triplet_loss(features, labels, alpha=0.5, num_anchors=10):
    A = min(num_anchors, features.shape[0])
    sq = 2 - 2 * features[:A] @ features.T
    eq = labels[:A].unsqueeze(1) == labels.unsqueeze(0)
    eye = torch.zeros_like(eq)
    eye[torch.arange(A), torch.arange(A)] = True
    pos_mask = eq & ~eye
    neg_mask = ~eq
    margins = sq.unsqueeze(2) - sq.unsqueeze(1) + alpha
    valid = pos_mask.unsqueeze(2) & neg_mask.unsqueeze(1)
    return torch.where(valid, margins.clamp(min=0), torch.zeros_like(margins)).sum()
'''
#: What bob renames in ada's triplet_loss.
RENAMED = {"dist": "d", "same": "match", "anchors": "n_anc", "to_positive": "pos", "to_negative": "neg",
           "violation": "hinge", "is_anchor": "diag", "features": "emb", "labels": "y"}


def edited(source: str, edits: list[tuple[str, str]]) -> str:
    for old, new in edits:
        if old not in source:
            raise ValueError(f"the reference's triplet_loss no longer holds {old!r}: update this test's edits")
        source = source.replace(old, new)
    return source


def disguised(source: str, reformat: bool = True) -> str:
    """``source`` (the reference's triplet_loss) as a copier hands it in: two pairs of independent
    statements swapped, comments added and removed, every local name renamed, a line split."""
    lines = {name: next(line for line in source.splitlines() if line.strip().startswith(f"{name} ="))
             for name in ("dist", "same", "to_positive", "to_negative")}
    source = edited(source, [(lines["dist"] + "\n" + lines["same"], lines["same"].split("  #")[0] + "  # same label?\n"
                              + lines["dist"].split("  #")[0]),
                             (lines["to_positive"] + "\n" + lines["to_negative"],
                              lines["to_negative"] + "\n    # positives only\n" + lines["to_positive"])])
    if reformat:
        source = edited(source, [("labels[:anchors, None] == labels[None, :]",
                                  "(labels[:anchors, None]\n            == labels[None, :])")])
    for old, new in RENAMED.items():
        source = re.sub(rf"\b{old}\b", new, source)
    return source


def stubs(lab: str = LAB) -> dict[str, str]:
    """The released notebook's solution cells: what a student who changed nothing submits."""
    release = nbformat.read(REPO / "notebooks" / f"{lab}.ipynb", as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in release.cells
            if c.cell_type == "code" and c.get("metadata", {}).get("nbgrader", {}).get("solution")}


def class_code() -> dict[str, dict[str, str]]:
    reference = build.reference_code()["triplet_loss"]
    hinge_sign = build.mistake_code(LAB, "hinge_sign")
    mine = {"ada": reference, "bob": disguised(reference), "cy": CY, "dee": DEE, "eve": hinge_sign["triplet_loss"]}
    return {student: {**stubs(), **({"triplet_loss": code} if code else {})}
            for student, code in {**mine, "sam": None}.items()}


def checkpoints(folder: Path) -> dict[str, Path]:
    """ada's network, bob's copy of her file, eve's copy of her weights with 0.5% noise, cy's and
    dee's own networks, sam's copy of the course's mnist_triplet.pt."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for student, seed in (("ada", 3), ("cy", 4), ("dee", 5)):
        torch.manual_seed(seed)
        paths[student] = save(folder / f"{student}.pt", ConvNet())
    paths["bob"] = paths["ada"]
    state = torch.load(paths["ada"], weights_only=True)["state_dict"]
    g = torch.Generator().manual_seed(0)
    paths["eve"] = save(folder / "eve.pt", network({k: v + 0.005 * v.norm() / v.numel() ** 0.5 * torch.randn(
        v.shape, generator=g) for k, v in state.items()}))
    paths["sam"] = COURSE_TRIPLET
    return paths


def save(path: Path, net: ConvNet, epochs: int = 1) -> Path:
    return save_checkpoint(path, net, dataset="MNIST", loss="triplet", seed=0, epochs=epochs,
                           history={"loss": [1.0] * epochs, "loss_total": [100.0] * epochs})


def network(state) -> ConvNet:
    net = ConvNet()
    net.load_state_dict(state)
    return net


def write_class(root: Path, layout: str, code=None, weights=None) -> tuple[Path, dict[str, str]]:
    """The class laid out as ``layout`` under ``root``; returns what to pass as the submissions and
    each student's name as the report will give it."""
    code = class_code() if code is None else code
    weights = checkpoints(root / "networks") if weights is None else weights
    names = {s: s for s in code}
    if layout == "exchange":  # nbgrader's submitted/<student>/<lab>/
        for student, functions in code.items():
            folder = root / "course" / "submitted" / student / LAB
            build.write_submission(folder, LAB, replace=functions, checkpoint=weights.get(student))
        return root / "course", names
    if layout == "folder":  # a folder of student folders
        for student, functions in code.items():
            build.write_submission(root / "class" / student, LAB, replace=functions, checkpoint=weights.get(student))
        return root / "class", names
    archive = root / "export.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for k, (student, functions) in enumerate(code.items()):
            notebook = build.write_submission(root / "tmp" / student, LAB, replace=functions)
            if layout == "moodle":  # a folder per student, "Full Name_<id>_assignsubmission_file_"
                prefix = f"{student.title()} Doe_{100 + k}_assignsubmission_file_/"
                names[student] = f"{student.title()}_Doe"
            else:  # canvas: loose files "<login>_<id>_<id>_<original name>"
                prefix = f"{student}_{200 + k}_{300 + k}_"
            out.write(notebook, prefix + f"{LAB}.ipynb")
            if student in weights:
                out.write(weights[student], prefix + "triplet_net.pt")
    return archive, names


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def flagged(rows, kind="code") -> set[tuple[str, str, str]]:
    return {(r["student_a"], r["student_b"], r["function"]) for r in rows
            if r["flagged"] == "yes" and (r["function"].endswith(".pt")) == (kind == "weights")}


@pytest.mark.parametrize("layout", ["exchange", "folder", "moodle", "canvas"])
def test_the_copied_function_and_the_copied_checkpoints_are_flagged_and_nothing_else(layout, tmp_path, capsys):
    submissions, names = write_class(tmp_path, layout)
    assert main(["similarity", LAB, str(submissions), "--out", str(tmp_path / "report")]) == 0
    rows = read_csv(tmp_path / "report" / "similarity.csv")
    ada, bob, cy, dee, eve, sam = (names[s] for s in ("ada", "bob", "cy", "dee", "eve", "sam"))
    assert flagged(rows) == {(ada, bob, "triplet_loss")}
    copied = next(r for r in rows if (r["student_a"], r["student_b"]) == (ada, bob))
    assert float(copied["score"]) > 0.95 and "the cell defining triplet_loss: lines" in copied["matched_lines_a"]
    scores = {frozenset((r["student_a"], r["student_b"])): float(r["score"]) for r in rows
              if r["function"] == "triplet_loss"}
    for pair in ((cy, dee), (ada, cy), (ada, dee), (bob, cy), (bob, dee), (ada, eve)):
        assert scores.get(frozenset(pair), 0.0) < FLAG_SCORE, pair
    assert not [r for r in rows if sam in (r["student_a"], r["student_b"]) and not r["function"].endswith(".pt")]
    assert flagged(rows, "weights") == {(ada, bob, "triplet_net.pt"), (ada, eve, "triplet_net.pt"),
                                        (bob, eve, "triplet_net.pt"),
                                        (sam, "course:mnist_triplet.pt", "triplet_net.pt")}
    how = {(r["student_a"], r["student_b"]): r["matched_lines_a"] for r in rows if r["function"] == "triplet_net.pt"}
    assert how[ada, bob] == "the same file"
    assert how[sam, "course:mnist_triplet.pt"] == "the same file"
    assert how[ada, eve].startswith("nearly the same weights (relative distance 0.00")
    out = capsys.readouterr().out
    assert f"similarity of 6 submission(s) of {LAB}: 1 pair(s) of functions and 4 of checkpoints flagged" in out
    assert f"{ada} & {bob}" in out and "similarity.html" in out
    page = (tmp_path / "report" / "similarity.html").read_text()
    assert page.count("<section>") == 1 and page.count('<tr class="hit">') >= 2 * 9


def test_renames_formatting_comments_and_reordering_change_no_k_gram():
    reference = "import torch\n\n" + build.reference_code()["triplet_loss"]
    copy = "import torch as T\n\n" + disguised(build.reference_code()["triplet_loss"], reformat=False).replace(
        "torch.", "T.")
    (original,), (renamed,) = (source_functions(code, ("triplet_loss",))[0].values() for code in (reference, copy))
    assert set(original.grams) == set(renamed.grams)
    assert ("-", "torch", ".", "inf", ")") in renamed.grams  # T.inf is read as torch.inf
    one_line = source_functions("def f(x):\n    a = x + 1; b = x * 2\n    return a - b\n", ("f",))[0]["f"]
    two_lines = source_functions("def f(y):\n    q = y * 2\n    p = y + 1\n    return p - q\n", ("f",))[0]["f"]
    assert set(one_line.grams) == set(two_lines.grams)
    # names read from outside, attributes and keyword arguments are kept: they say what the code does
    cumsum = source_functions("def f(x):\n    return torch.cumsum(x, dim=0)\n", ("f",))[0]["f"]
    assert ("return", "torch", ".", "cumsum", "(") in cumsum.grams and ("V", ",", "dim", "=", "0") in cumsum.grams


def test_the_released_skeleton_alone_is_not_flagged(tmp_path):
    """Two students who hand in the release unchanged share all of its code, and none of it counts;
    with the provided code of a richer release, the same holds, and only because it is left out."""
    provided = edited(stubs()["train_triplets"], [("    # YOUR CODE HERE\n", "\n".join(
        line for line in (REPO / "tests" / "submissions" / "student_train_triplets.py").read_text().splitlines()[4:17])
        + "\n    # YOUR CODE HERE\n")])
    release = build.student_notebook(LAB, {**stubs(), "train_triplets": provided})
    nbformat.write(release, tmp_path / "release.ipynb")
    code = {"kim": {**stubs(), "train_triplets": provided}, "lee": {**stubs(), "train_triplets": provided},
            "ada": {**stubs(), "triplet_loss": build.reference_code()["triplet_loss"]}}
    submissions, _ = write_class(tmp_path, "folder", code=code, weights={})
    result = similarity(LAB, submissions, tmp_path / "report", release=tmp_path / "release.ipynb")
    assert result.code == [] and result.weights == []
    assert len(result.functions["kim"]["train_triplets"].lines) > 15  # the provided code was read, and left out
    against_stubs = similarity(LAB, submissions, tmp_path / "report_stubs", release=RELEASE)
    assert [(m.student_a, m.student_b, m.function, m.flagged) for m in against_stubs.code] == [
        ("kim", "lee", "train_triplets", True)]


def test_identical_and_nearly_identical_checkpoints_are_flagged(tmp_path):
    torch.manual_seed(3)
    net = ConvNet()
    state = net.state_dict()
    own = save(tmp_path / "own.pt", net)
    shutil.copy(own, tmp_path / "copied.pt")
    resaved = save(tmp_path / "resaved.pt", network(state), epochs=4)  # the same weights, another history
    half = save(tmp_path / "half.pt", network({k: v.half().float() for k, v in state.items()}))
    trained = {k: v.clone() for k, v in state.items()}
    for key in ("0.weight", "3.weight", "6.weight"):  # far beyond a copy: a third of each layer changed
        noise = torch.randn(state[key].shape, generator=torch.Generator().manual_seed(1))
        trained[key] += 0.3 * state[key].std() * noise
    other = save(tmp_path / "other.pt", network(trained))
    torch.manual_seed(4)
    independent = save(tmp_path / "independent.pt", ConvNet())
    students = {p.stem: read_weights(p) for p in (own, tmp_path / "copied.pt", resaved, half, other, independent)}
    students["course_copy"] = read_weights(COURSE_TRIPLET)
    found = {(m.student, m.other): m for m in weight_matches(students, course_weights())}
    assert found["copied", "own"].detail == "the same file"
    assert found["own", "resaved"].detail == found["copied", "resaved"].detail == "the same weights"
    assert 0 < found["half", "own"].distance < 0.001 and found["half", "own"].detail.startswith("nearly the same")
    assert found["course_copy", "course:mnist_triplet.pt"].detail == "the same file"
    assert set(found) == {("copied", "own"), ("own", "resaved"), ("copied", "resaved"), ("half", "own"),
                          ("copied", "half"), ("half", "resaved"), ("course_copy", "course:mnist_triplet.pt")}
    own, other = (torch.cat([t.flatten() for t in students[n].part.values()]) for n in ("own", "other"))
    assert (other - own).norm() / own.norm() > 2 * NEAR_COPY  # "other" is no copy, and is not flagged


class Canary:
    """A pickle that writes a file when it is unpickled: torch.load(weights_only=True) must refuse it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "unpickled"))


def test_hostile_and_broken_submissions_end_in_notes_and_the_rest_is_compared(tmp_path):
    code = {s: c for s, c in class_code().items() if s in ("ada", "bob")}
    submissions, _ = write_class(tmp_path, "exchange", code=code, weights={})
    root = submissions / "submitted"

    def folder(student):
        path = root / student / LAB
        path.mkdir(parents=True)
        return path

    (folder("json") / f"{LAB}.ipynb").write_text('{"cells": [ oops')
    (folder("binary") / f"{LAB}.ipynb").write_bytes(bytes(range(256)) * 100)
    with open(folder("huge") / f"{LAB}.ipynb", "wb") as handle:
        handle.truncate(60_000_000)
    many = build.student_notebook(LAB, stubs())
    many.cells += [nbformat.v4.new_code_cell(f"x{i} = {i}") for i in range(10_000)]
    nbformat.write(many, folder("cells") / f"{LAB}.ipynb")
    broken = {**stubs(), "triplet_loss": "def triplet_loss(features, labels:\n    return 0\n",
              "train_triplets": "def train_triplets(net, train_set):\n" + "    x = 1\n" * 12_000}
    nbformat.write(build.student_notebook(LAB, broken), folder("syntax") / f"{LAB}.ipynb")
    deep = {**stubs(), "triplet_loss": "def triplet_loss(f, l):\n    return 1" + "+1" * 100_000 + "\n"}
    nbformat.write(build.student_notebook(LAB, deep), folder("deep") / f"{LAB}.ipynb")
    linked = folder("linked")
    (linked / f"{LAB}.ipynb").symlink_to(root / "ada" / LAB / f"{LAB}.ipynb")
    (linked / "triplet_net.pt").symlink_to(COURSE_TRIPLET)
    bad = folder("checkpoints")
    shutil.copy(root / "ada" / LAB / f"{LAB}.ipynb", bad / f"{LAB}.ipynb")
    torch.save({"state_dict": Canary(tmp_path / "canary")}, bad / "triplet_net.pt")
    bomb = folder("bomb")
    shutil.copy(root / "ada" / LAB / f"{LAB}.ipynb", bomb / f"{LAB}.ipynb")
    with zipfile.ZipFile(bomb / "triplet_net.pt", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\0" * 200_000_000)
    with open(folder("big") / "triplet_net.pt", "wb") as handle:
        handle.truncate(40 << 20)
    shutil.copy(root / "ada" / LAB / f"{LAB}.ipynb", root / "big" / LAB / f"{LAB}.ipynb")

    result = similarity(LAB, submissions, tmp_path / "report")
    notes = {student: " ".join(items) for student, items in result.notes.items()}
    assert "not valid JSON" in notes["json"] and "not valid JSON" in notes["binary"]
    assert "too large for a notebook" in notes["huge"]
    assert notes["cells"] == "" and set(result.functions["cells"]) == set(result.functions["ada"])
    assert "train_triplets not compared: it is 120 kB of code, more than the 100 kB compared" in notes["syntax"]
    assert "triplet_loss" not in result.functions["syntax"]  # its cell does not parse: nothing to compare
    assert "the notebook could not be compared" in notes["deep"]
    assert f"{LAB}.ipynb is a symbolic link: not compared" in notes["linked"]
    assert "triplet_net.pt is a symbolic link: not compared" in notes["linked"]
    assert "not a checkpoint torch.load(weights_only=True) can read" in notes["checkpoints"]
    assert not (tmp_path / "canary").exists()
    assert "triplet_net.pt holds 191 MB, more than the 32 MB a checkpoint may: not compared" in notes["bomb"]
    assert "triplet_net.pt is 40 MB, larger than a checkpoint" in notes["big"]
    pairs = {(m.student_a, m.student_b) for m in result.code if m.flagged}
    assert ("ada", "bob") in pairs and ("ada", "checkpoints") in pairs  # the readable notebooks are compared
    page = (tmp_path / "report" / "similarity.html").read_text()
    assert "Not compared, or compared in part" in page and "holds 191 MB, more than the 32 MB" in page


def test_the_report_shows_student_code_as_text_and_runs_none_of_it(tmp_path):
    attack = ('    label = "</script><script>alert(1)</script>"  # <img src=x onerror=alert(1)>\n'
              '    """<svg onload=alert(1)>"""\n')
    copied = build.reference_code()["triplet_loss"].replace("    anchors = min(", attack + "    anchors = min(")
    code = {s: {**stubs(), "triplet_loss": copied} for s in ("ada", "bob")}
    submissions, _ = write_class(tmp_path, "folder", code=code, weights={})
    junk = submissions / "mallory"
    junk.mkdir()
    (junk / "<img src=x onerror=alert(2)>.ipynb").write_text("not json")
    similarity(LAB, submissions, tmp_path / "report")
    page = (tmp_path / "report" / "similarity.html").read_text()
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert not re.search(r"<(script|img|svg|iframe|object|embed)\b", page, re.IGNORECASE)
    assert "default-src 'none'; style-src 'unsafe-inline'" in page


def test_grade_takes_the_no_similarity_flag(monkeypatch, tmp_path):
    import autograder.grading.grade as grading

    calls = []
    monkeypatch.setattr(grading, "grade", lambda *args, **kwargs: calls.append(kwargs) or [])
    assert main(["grade", LAB, str(tmp_path), "--no-sandbox"]) == 0
    assert main(["grade", LAB, str(tmp_path), "--no-sandbox", "--no-similarity"]) == 0
    assert [c["similarity"] for c in calls] == [True, False]


def test_similarity_refuses_an_unknown_lab_and_a_missing_release(tmp_path):
    with pytest.raises(SystemExit, match="unknown lab 'lab9'"):
        similarity("lab9", tmp_path, tmp_path / "out")
    with pytest.raises(SystemExit, match="no released notebook .*nothing.ipynb: build it with `make notebooks`"):
        compare(LAB, [], tmp_path / "nothing.ipynb")


@pytest.mark.slow
def test_grade_prints_the_summary_after_the_grade_table(tmp_path):
    """``python -m autograder grade`` on a Moodle export: the report is written beside grades.csv and
    the summary printed after the grade table. (In a process of its own: the grader forks its
    workers, which must not inherit the thread pools of this test process's torch calls.)"""
    lab = "lab1_retrieval"
    reference = build.reference_code()["evaluate_AP"]
    code = {"ada": {**stubs(lab), "evaluate_AP": reference},
            "bob": {**stubs(lab), "evaluate_AP": disguised_ap(reference)}}
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for k, (student, functions) in enumerate(code.items()):
            notebook = build.write_submission(tmp_path / student, lab, replace=functions)
            out.write(notebook, f"{student.title()} Doe_{k}_assignsubmission_file_/{lab}.ipynb")
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", lab, str(archive), "--out",
                          str(tmp_path / "graded"), "--jobs", "2", "--no-sandbox", "--time-limit", "120"], cwd=REPO,
                         capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode in (0, 3), run.stdout[-3000:] + run.stderr[-3000:]  # 3: no MNIST for some checks
    table, _, after = run.stdout.partition(f"submission(s) of {lab} graded")
    assert "Ada_Doe" in table and "Bob_Doe" in table
    assert f"similarity of 2 submission(s) of {lab}: 1 pair(s) of functions" in after
    rows = read_csv(tmp_path / "graded" / "similarity.csv")
    assert ("Ada_Doe", "Bob_Doe", "evaluate_AP") in flagged(rows)
    assert (tmp_path / "graded" / "similarity.html").is_file() and (tmp_path / "graded" / "grades.csv").is_file()


def disguised_ap(source: str) -> str:
    """The reference's evaluate_AP renamed, with a comment, two independent statements swapped."""
    source = edited(source, [("    precision = hits / torch.arange(1, len(relevant) + 1, dtype=torch.float64)\n"
                              "    total = relevant.sum().clamp_min(1.0)\n",
                              "    total = relevant.sum().clamp_min(1.0)  # at least one\n"
                              "    precision = hits / torch.arange(1, len(relevant) + 1, dtype=torch.float64)\n")])
    for old, new in {"order": "idx", "relevant": "rel", "hits": "tp", "total": "n_rel", "precision": "prec"}.items():
        source = re.sub(rf"\b{old}\b", new, source)
    return source


@pytest.mark.slow
def test_the_benchmark_runs(tmp_path):
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "similarity.py"), "--smoke"], cwd=REPO,
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Lab 2, 12 submissions" in run.stdout and "python -m autograder similarity: " in run.stdout
    assert re.search(r"flagged: \d+ pairs of functions, [1-9]\d* of checkpoints", run.stdout)
    refused = subprocess.run([sys.executable, str(REPO / "benchmarks" / "similarity.py"), "-n", "0"], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "argument -n: must be at least 1, got 0" in refused.stderr
