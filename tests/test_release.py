"""The student bundle holds what students need and no solution, hidden test or reference output."""

import ast
import hashlib
import inspect
import zipfile

import pytest

from autograder import labs, release
from autograder.paths import REPO, REPO_MODELS
from labtools.labs import lab_ids

REFERENCE_MODULES = tuple(labs.reference(lab) for lab in lab_ids())


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


def reference_definitions():
    """Every function of the reference modules and every method of their classes (Lab 4's NormSoftmax), as ast nodes."""
    for module in REFERENCE_MODULES:
        for _, member in inspect.getmembers(module, lambda m: inspect.isfunction(m) or inspect.isclass(m)):
            if member.__module__ != module.__name__:
                continue
            definition = ast.parse(inspect.getsource(member).strip()).body[0]
            if isinstance(definition, ast.ClassDef):
                yield from ((module, node) for node in definition.body if isinstance(node, ast.FunctionDef))
            else:
                yield module, definition


def reference_body_lines():
    """Distinctive code lines of every reference solution's body (docstrings excluded)."""
    lines = set()
    for module, definition in reference_definitions():
        body = definition.body
        if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        for statement in body:
            if provided_helper_call(module, statement):
                continue
            for line in ast.unparse(statement).splitlines():
                if len(line.strip()) >= 30 and "(" in line:  # a computation, not an unpacking
                    lines.add(line.strip())
    return lines


def test_the_leak_search_covers_every_lab_and_class_methods():
    """The searched lines include Lab 4's graded functions and the bodies of its NormSoftmax head."""
    lines = reference_body_lines()
    assert "self.weight = nn.Parameter(torch.randn(num_classes, dim))" in lines  # NormSoftmax.__init__
    assert "return F.normalize(self.project(x), dim=1)" in lines  # NormSoftmax.forward
    assert "logits = cos.scatter(1, labels[:, None], true_logit)" in lines  # arcface_loss
    for module in REFERENCE_MODULES:
        own = [d for m, d in reference_definitions() if m is module]
        assert own, f"no reference definition found in {module.__name__}"


def test_bundle_has_what_students_need(bundle):
    root, names = bundle
    for path in ("notebooks/lab1_retrieval.ipynb", "notebooks/lab2_triplet.ipynb", "notebooks/lab3_smoothap.ipynb",
                 "notebooks/lab4_beyond.ipynb", "labtools/__init__.py",
                 "labtools/checks/__init__.py", "models/mnist_classifier.pt", "models/mnist_classifier.json",
                 "models/mnist_triplet.json",
                 "environment.yml", "requirements.txt", "README.md", "pyproject.toml"):
        assert (root / path).is_file(), path
        assert f"{release.BUNDLE}/{path}" in names
    assert not any("autograder" in name.split("/") for name in names)
    assert not any(name.endswith((".train.pt", ".pyc")) for name in names)
    # Lab 4's study: every finished network and card of models/lab4 (those there are) ships
    study = [p for p in (REPO_MODELS / "lab4").glob("*") if p.suffix in (".pt", ".json")
             and not p.name.endswith((".train.pt", ".tmp"))] if (REPO_MODELS / "lab4").is_dir() else []
    for path in study:
        assert f"{release.BUNDLE}/models/lab4/{path.name}" in names, path.name


def test_bundle_has_no_graded_deliverable(bundle):
    """No instructor copy of a graded deliverable (Lab 2's mnist_triplet.pt would earn every checkpoint
    point as triplet_net.pt), under its name or any other: no file of the bundle has its bytes, no
    checkpoint its weights. Its card, which the notebook reads, ships."""
    import torch

    root, names = bundle
    assert "models/mnist_triplet.pt" in release.GRADED_DELIVERABLES
    deliverables = [REPO / d for d in release.GRADED_DELIVERABLES]
    assert all(d.is_file() for d in deliverables), deliverables  # the search below looks for something real
    for deliverable in release.GRADED_DELIVERABLES:
        stem = deliverable[: -len(".pt")]
        assert not [n for n in names if n.startswith(f"{release.BUNDLE}/{stem}.") and n.endswith(".pt")], deliverable
        assert f"{release.BUNDLE}/{stem}.json" in names  # the card stays
    digests = {hashlib.sha256(d.read_bytes()).hexdigest(): d for d in deliverables}
    weights = [torch.load(d, weights_only=True)["state_dict"] for d in deliverables]
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        assert hashlib.sha256(path.read_bytes()).hexdigest() not in digests, path
        if path.suffix == ".pt":
            state = torch.load(path, weights_only=True).get("state_dict", {})
            for theirs in weights:
                assert not (state.keys() == theirs.keys() and all(torch.equal(state[k], theirs[k]) for k in state)), path


def test_deliverables_and_files_training_leaves_beside_them_are_excluded():
    assert release.deliverable_excluded("models/mnist_triplet.pt")
    assert release.deliverable_excluded("models/mnist_triplet.train.pt")
    assert release.deliverable_excluded("models/mnist_triplet.best.pt")
    assert not release.deliverable_excluded("models/mnist_triplet.json")
    assert not release.deliverable_excluded("models/mnist_classifier.pt")
    assert not release.deliverable_excluded("models/lab4/mnist_triplet.pt")


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
    outputs = [p for p in (REPO / "autograder").rglob("*") if p.is_file() and p.name == "reference_outputs.pt"]
    hashes = {hashlib.sha256(p.read_bytes()).hexdigest() for p in outputs}
    for path in root.rglob("*"):
        if path.is_file():
            assert hashlib.sha256(path.read_bytes()).hexdigest() not in hashes, path
    for path, text in text_files(root):
        for output in outputs:
            assert output.name not in text, f"{path} names the reference output {output.name}"
