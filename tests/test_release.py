"""The student bundle holds what students need and no solution, hidden test or reference output."""

import ast
import hashlib
import inspect
import zipfile
from pathlib import Path

import pytest

from autograder import release
from autograder.reference import lab1, lab2, lab3, lab4, lab5

REPO = Path(__file__).resolve().parents[1]
REFERENCE_MODULES = (lab1, lab2, lab3, lab4, lab5)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    archive = release.build(out)
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
    return out / release.BUNDLE, names


def text_files(root):
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in {".py", ".ipynb", ".md", ".json", ".txt", ".yml", ".toml"}:
            yield path, path.read_text(errors="replace")


def provided_helper_call(module, statement):
    """True for a bare call of a labtools function (an input check the bundle ships on purpose)."""
    if not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
            and isinstance(statement.value.func, ast.Name)):
        return False
    function = getattr(module, statement.value.func.id, None)
    return getattr(function, "__module__", "").startswith("labtools.")


def reference_body_lines():
    """Distinctive code lines of every reference solution's body (docstrings excluded)."""
    lines = set()
    for module in REFERENCE_MODULES:
        for _, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__:
                continue
            tree = ast.parse(inspect.getsource(function).strip())
            body = tree.body[0].body
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]
            for statement in body:
                if provided_helper_call(module, statement):
                    continue
                for line in ast.unparse(statement).splitlines():
                    if len(line.strip()) >= 30 and "(" in line:  # a computation, not an unpacking
                        lines.add(line.strip())
    return lines


def test_bundle_has_what_students_need(bundle):
    root, names = bundle
    for path in ("notebooks/lab1_retrieval.ipynb", "notebooks/lab2_triplet.ipynb", "labtools/__init__.py",
                 "labtools/checks/__init__.py", "models/mnist_classifier.pt", "models/mnist_classifier.json",
                 "environment.yml", "requirements.txt", "README.md", "pyproject.toml"):
        assert (root / path).is_file(), path
        assert f"{release.BUNDLE}/{path}" in names
    assert not any("autograder" in name.split("/") for name in names)
    assert not any(name.endswith((".train.pt", ".pyc")) for name in names)


def test_bundle_has_no_solution_or_hidden_test_marker(bundle):
    root, _ = bundle
    for path, text in text_files(root):
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in text, f"{marker} in {path}"
        assert "import autograder" not in text and "from autograder" not in text, path


def test_bundle_has_no_reference_solution_code(bundle):
    root, _ = bundle
    lines = reference_body_lines()
    assert len(lines) >= 5  # the search below looks for something real
    for path, text in text_files(root):
        normalized = {line.strip() for line in text.replace("\\n", "\n").splitlines()}
        leaked = lines & normalized
        assert not leaked, f"{path} contains reference code: {sorted(leaked)[:3]}"


def test_bundle_has_no_reference_output(bundle):
    root, _ = bundle
    outputs = [p for p in (REPO / "autograder").rglob("*") if p.is_file() and "reference_outputs" in p.parts]
    hashes = {hashlib.sha256(p.read_bytes()).hexdigest() for p in outputs}
    for path in root.rglob("*"):
        if path.is_file():
            assert hashlib.sha256(path.read_bytes()).hexdigest() not in hashes, path
    for path, text in text_files(root):
        for output in outputs:
            assert output.name not in text, f"{path} names the reference output {output.name}"
