"""Adding a lab is one shipped module and one instructor folder.

A toy sixth lab (``lab6_toy``: the spread of a batch of embeddings around its mean) is added to a
copy of the repository as exactly that: ``labtools/labs/lab6_toy.py`` (its spec and a public
check) and ``autograder/labs/lab6_toy/`` (reference, notebook source, hidden checks). Nothing
else is edited. The copy then builds its notebook, stores its reference outputs, releases it
to students, checks and grades two submissions through the sandboxed grader, and ships the
student side in the bundle; the copy is discarded with the test's temporary folder.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.paths import REPO
from labtools import sandbox

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sandbox.unavailable_reason() is not None, reason="no sandbox for student code")]

LAB = "lab6_toy"

SHIPPED = '''\
"""Lab 6 (a toy): the spread of a batch of embeddings around its mean."""

import torch

from labtools.checks.builders import simple_check
from labtools.checks.registry import Call
from labtools.judges import loss_value, parsed
from labtools.labs import LabSpec, Report, Solution

SPEC = LabSpec(id="lab6_toy", title="Lab 6: The spread of a batch", solutions=(Solution("spread", 2.0),),
               reports=(Report("report_spread", 1.0),))


def _two_points(outcomes, ctx):
    value, problem = parsed(outcomes, loss_value, "spread")
    if problem:
        return False, problem
    if abs(value - 1.0) > 1e-6:
        return False, f"the rows (0, 0) and (2, 0) are at squared distance 1 from their mean (1, 0): got {value:.4f}"
    return True, "the rows (0, 0) and (2, 0) have spread 1"


simple_check("spread.two_points", SPEC.id, "spread", 1.0, "the spread of (0, 0) and (2, 0) is 1",
             lambda: [Call("spread", [torch.tensor([[0.0, 0.0], [2.0, 0.0]])])], _two_points)
'''

REFERENCE = '''\
"""Lab 6 reference."""


def spread(x):
    """The mean squared distance of the rows of ``x`` ``[N, D]`` to their mean: a 0-d tensor."""
    return (x - x.mean(dim=0)).square().sum(dim=1).mean()
'''

NOTEBOOK = '''\
# Source of the Lab 6 notebook (a toy).

# %% [markdown]
# # Lab 6: The spread of a batch
#
# Implement `spread(x)`: the mean squared distance of the rows of `x` to their mean.

# %% [locked] setup
import torch

# %% [solution] spread

# %% [tests] spread
from labtools.checks import run_public_checks

run_public_checks("lab6_toy", "spread", spread);

# %% [markdown] {"nbgrader": "answer", "id": "report_spread"}
# YOUR ANSWER HERE
'''

HIDDEN = '''\
"""Lab 6's hidden checks: spread against the reference on fixed and on random inputs."""

import torch

from autograder.grading.hidden import HiddenValues, register_values, same_loss


def fixed():
    return [torch.randn(7, 3, generator=torch.Generator().manual_seed(5)) * 2], {}


def drawn(rng):
    g = torch.Generator().manual_seed(rng.randrange(1 << 30))
    return [torch.randn(rng.randint(2, 20), rng.randint(1, 8), generator=g)], {}


VALUES = (HiddenValues("spread", (0.5, 0.5), fixed, same_loss("spread"), drawn),)
register_values("lab6_toy", VALUES)
'''

WRONG = '''\
def spread(x):
    """The mean squared distance of the rows of ``x`` ``[N, D]`` to their mean: a 0-d tensor."""
    return (x - x.mean(dim=0)).square().sum()
'''


def _copy_repository(target: Path) -> Path:
    """The repository's tracked files (the working tree's versions) under ``target``."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _run(kit: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(kit)}
    done = subprocess.run([sys.executable, *args], cwd=kit, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def _submission(released: Path, folder: Path, code: str) -> None:
    nb = nbformat.read(released, as_version=4)
    cell = next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "spread")
    cell.source = code
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{LAB}.ipynb")


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs the git checkout")
def test_a_sixth_lab_is_one_module_and_one_folder(tmp_path):
    kit = _copy_repository(tmp_path / "kit")
    (kit / "labtools" / "labs" / f"{LAB}.py").write_text(SHIPPED)
    folder = kit / "autograder" / "labs" / LAB
    folder.mkdir()
    (folder / "__init__.py").write_text('"""The instructor side of lab6_toy."""\n')
    (folder / "reference.py").write_text(REFERENCE)
    (folder / "notebook.py").write_text(NOTEBOOK)
    (folder / "hidden.py").write_text(HIDDEN)

    _run(kit, "-m", "autograder.notebooks", "build", LAB)
    _run(kit, "-m", "autograder.grading.reference_outputs", LAB)
    _run(kit, "-m", "autograder.notebooks", "release", LAB)
    released = kit / "notebooks" / f"{LAB}.ipynb"
    text = released.read_text()
    assert "def spread(x):" in text and ".square().sum(dim=1).mean()" not in text  # the stub, not the solution
    points = {c["metadata"]["nbgrader"]["grade_id"]: c["metadata"]["nbgrader"].get("points")
              for c in json.loads(text)["cells"] if c["metadata"].get("nbgrader", {}).get("grade")}
    assert points == {"test_spread": 2.0, "report_spread": 1.0}  # from the spec: the source states no points

    subs = tmp_path / "submissions"
    _submission(released, subs / "right", REFERENCE.split("\n\n\n", 1)[1])
    _submission(released, subs / "wrong", WRONG)
    checked = subprocess.run([sys.executable, "-m", "labtools.checks", str(subs / "wrong" / f"{LAB}.ipynb")],
                             cwd=kit, env={**os.environ, "PYTHONPATH": str(kit)}, capture_output=True, text=True,
                             timeout=300)
    assert "spread.two_points" in checked.stdout and "FAIL" in checked.stdout, checked.stdout + checked.stderr

    _run(kit, "-m", "autograder", "grade", LAB, str(subs), "--out", str(tmp_path / "grades"), "--jobs", "1",
         "--no-similarity")
    with open(tmp_path / "grades" / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    earned = {(row["student"], row["check"]): float(row["points"]) for row in rows}
    assert {row["check"] for row in rows} == {"spread.two_points", "spread.hidden_fixed", "spread.hidden_random", "TOTAL"}
    assert earned["right", "TOTAL"] == pytest.approx(2.0), rows
    # the sum instead of the mean loses the public check (1 point) and both hidden ones (0.5 each)
    assert earned["wrong", "TOTAL"] == pytest.approx(0.0), rows

    _run(kit, "-m", "autograder", "release", "--out", str(tmp_path / "bundle"))
    shipped = {p.relative_to(tmp_path / "bundle").as_posix() for p in (tmp_path / "bundle").rglob("*") if p.is_file()}
    assert any(p.endswith(f"labtools/labs/{LAB}.py") for p in shipped)
    assert any(p.endswith(f"notebooks/{LAB}.ipynb") for p in shipped)
    assert not any("autograder" in p.split("/") for p in shipped)
