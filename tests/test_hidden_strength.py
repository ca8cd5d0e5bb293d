"""The hidden checks alone catch every typical mistake, and accept every right answer.

Every typical mistake of every lab (``tests/labs/mistakes/<lab>.py``, read by ``build.mistakes``)
must lose points on the hidden checks of the functions it changes, its fixed inputs and its random
ones: their rows are clustered, margins and ties matter (a margin ignored, an anchor or query
counted as its own positive, ties broken the other way). The reference earns every hidden point,
and so do the mistakes whose values are right (``right_values``: a loop, a [B, B, B] tensor: only
the public checks of loops and memory see them), which proves the ties of the inputs are exact for
any implementation.

Each variant (the reference, a mistake) is the reference's functions with the variant's edits,
every function renamed with a suffix of its own, so that all of them go through the grader's
sandboxed engine (``labtools.checks.engine.evaluate`` with the sandboxed runner) in one worker.
The random inputs are drawn from a fixed seed here (at grading time they are fresh).
"""

from __future__ import annotations

import ast
import dataclasses
import random
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import autograder.grading.hidden as hidden
from autograder.grading.trusted import default_limits
from autograder.labs.lab1_retrieval.hidden import classifier_path
from labtools import labs
from labtools.checks.engine import evaluate, run_sandboxed
from labtools.checks.registry import Context, checks_for

sys.path.insert(0, str(Path(__file__).parent / "submissions"))
import build  # noqa: E402

HEADER = ["import math", "import torch", "from torch import nn", "from torch.nn import functional as F",
          "from labtools.validate import check_features, check_images, check_labels, check_pair, check_weights",
          "from labtools.models import extract_features", "from labtools.explain import last_conv, recorded_outputs"]
#: Hidden checks left out: the file checks of a submitted checkpoint (tests/labs/test_lab2_triplet.py).
FILE_CHECKS = "file"


def variants() -> dict[str, tuple[str, dict[str, str], bool]]:
    """``{name: (lab, {function: source}, right values)}``: the reference and every lab's mistakes."""
    found = {"reference": ("", {}, True)}
    for lab in labs.lab_ids():
        for name, mistake in build.mistakes(lab).items():
            found[f"{lab}/{name}"] = (lab, build.mistake_code(lab, name), mistake.right_values)
    return found


def callers(code: dict[str, str], changed: set[str]) -> set[str]:
    """``changed`` and every function of ``code`` that calls one of them, directly or not."""
    calls = {name: {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)} for name, source in code.items()}
    found = set(changed)
    while True:
        more = {name for name, names in calls.items() if names & found} - found
        if not more:
            return found
        found |= more


def renamed_source(code: dict[str, str], suffix: str) -> tuple[list[str], str]:
    """(imports, definitions) of ``code`` with every function and class it defines renamed ``<name><suffix>``."""
    trees = [ast.parse(source) for source in code.values()]
    names = {node.name for tree in trees for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    imports, definitions = [], []
    for tree in trees:
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                imports.append(ast.unparse(node))
                continue
            for inner in ast.walk(node):
                if isinstance(inner, (ast.FunctionDef, ast.ClassDef)) and inner.name in names:
                    inner.name += suffix
                elif isinstance(inner, ast.Name) and inner.id in names:
                    inner.id += suffix
                assert not (isinstance(inner, ast.arg) and inner.arg in names), f"parameter named {inner.arg}"
            definitions.append(ast.unparse(node))
    return imports, "\n\n\n".join(definitions)


def renamed_check(check, suffix: str, variant: str):
    """``check`` calling ``<function><suffix>`` (its calls renamed as they are prepared)."""
    def prepare():
        calls, state = check.prepare()
        return [dataclasses.replace(c, function=c.function + suffix, key=c.key and c.key + suffix) for c in calls], state

    return dataclasses.replace(check, id=f"{variant}: {check.id}", function=check.function + suffix, prepare=prepare)


def mnist_available() -> bool:
    try:
        hidden.mnist_test()
        classifier_path()
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """``{variant: (lab, right values, changed functions, {check id: result})}`` from one sandboxed run."""
    reference = {k: v for k, v in build.reference_code().items() if k != "train"}  # Lab 3's loop: no hidden check
    all_hidden = [c for lab in labs.lab_ids() for c in checks_for(lab, hidden=True) if c.kind != FILE_CHECKS]
    if not mnist_available():
        all_hidden = [c for c in all_hidden if c.id != "evaluate_mAP.hidden_classifier"]
    imports, bodies, checks, plan = set(HEADER), [], [], {}
    for index, (name, (lab, edits, right)) in enumerate(variants().items()):
        suffix = f"__v{index}"
        code = {**reference, **edits}
        changed = set(edits)
        mine, definitions = renamed_source(code, suffix)
        imports.update(mine)
        bodies.append(definitions)
        if name == "reference":
            chosen = all_hidden
        else:
            affected = callers(code, changed)
            chosen = [c for c in checks_for(lab, hidden=True) if c.kind != FILE_CHECKS and c.function in affected
                      and c.id != "evaluate_mAP.hidden_classifier" and c.function in labs.lab(lab).test_points]
        assert chosen, name
        checks += [renamed_check(c, suffix, name) for c in chosen]
        plan[name] = (lab, right, changed, {f"{name}: {c.id}" for c in chosen})
    source = "\n".join(sorted(imports)) + "\n\n\n" + "\n\n\n".join(bodies) + "\n"
    seeds = random.Random(20240)  # each check draws its inputs from a generator of its own, seeded from it
    hidden.random = SimpleNamespace(Random=lambda: random.Random(seeds.randrange(1 << 30)))
    try:
        results = evaluate(checks, Context("lab1_retrieval", source=source),
                           run_sandboxed(source, default_limits(), tmp_path_factory.mktemp("hidden")))
    finally:
        hidden.random = random
    by_id = {r.check.id: r for r in results}
    return {name: (lab, right, changed, {i.split(": ", 1)[1]: by_id[i] for i in ids})
            for name, (lab, right, changed, ids) in plan.items()}


def test_every_table_entry_is_graded(graded):
    table = {f"{lab}/{name}" for lab in labs.lab_ids() for name in build.mistakes(lab)}
    assert set(graded) == {"reference"} | table
    for required in ("lab2_triplet/triplet_anchor_positive", "lab2_triplet/triplet_margin_ignored",
                     "lab1_retrieval/map_query_included", "lab3_smoothap/query_included",
                     "lab4_beyond/recall_query_included"):
        assert required in graded and not graded[required][1], required


def test_the_reference_earns_every_hidden_point(graded):
    _, _, _, results = graded["reference"]
    failed = {cid: r.message for cid, r in results.items() if not r.passed}
    assert not failed, failed
    # every graded function with hidden checks of its code was checked
    expected = {c.function for lab in labs.lab_ids() for c in checks_for(lab, hidden=True) if c.kind != FILE_CHECKS}
    assert {cid.split(".")[0] for cid in results} == expected


@pytest.mark.parametrize("variant", sorted(n for n in variants() if n != "reference"))
def test_each_variant_is_graded_by_its_values_on_the_hidden_checks_alone(graded, variant):
    """A mistake loses hidden points on its fixed inputs and on its random ones; right values lose none."""
    lab, right, changed, results = graded[variant]
    messages = {cid: r.message for cid, r in results.items()}
    if right:
        assert all(r.passed for r in results.values()), messages
        return
    lost = sum(r.check.points - r.earned for r in results.values())
    assert lost > 0, messages
    for function in changed & set(labs.lab(lab).test_points):
        for kind in ("hidden_fixed", "hidden_random"):
            cid = f"{function}.{kind}"
            if cid in results:
                assert not results[cid].passed, (cid, results[cid].message)
