"""labtools.paths.models_dir: environment variable, upward search, package fallback, clear error."""

from pathlib import Path

import pytest

from labtools import paths


def _models(folder: Path) -> Path:
    models = folder / "models"
    models.mkdir(parents=True)
    (models / paths.MARKER).write_text("{}\n")
    return models


def _clean_ancestors(tmp_path):
    """Skip when a folder above the test's temporary folder already has the checkpoints' card."""
    for folder in tmp_path.resolve().parents:
        if (folder / "models" / paths.MARKER).is_file():
            pytest.skip(f"{folder / 'models'} holds {paths.MARKER}: the upward search cannot miss it")


@pytest.fixture
def no_fallback(monkeypatch, tmp_path):
    """No LABTOOLS_MODELS, and a package fallback folder that does not have the checkpoints."""
    monkeypatch.delenv("LABTOOLS_MODELS", raising=False)
    monkeypatch.setattr(paths, "_package_models", lambda: tmp_path / "site-packages" / "models")


def test_environment_variable_wins(monkeypatch, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    repo_models = _models(tmp_path / "repo")
    monkeypatch.setenv("LABTOOLS_MODELS", str(elsewhere))
    assert paths.models_dir(repo_models.parent) == elsewhere.resolve()


def test_environment_variable_must_be_a_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("LABTOOLS_MODELS", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="LABTOOLS_MODELS"):
        paths.models_dir()


@pytest.mark.parametrize(
    "where",
    [
        "notebooks",
        "autograder/course/source/lab1_retrieval",
        "autograder/course/autograded/student_a/lab2_triplet",
        "",
    ],
)
def test_search_upward_from_every_place_a_notebook_runs(no_fallback, tmp_path, monkeypatch, where):
    models = _models(tmp_path / "repo")
    cwd = tmp_path / "repo" / where
    cwd.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(cwd)
    assert paths.models_dir() == models.resolve()
    assert paths.model_path("mnist_classifier.pt") == models.resolve() / "mnist_classifier.pt"


def test_student_bundle(no_fallback, tmp_path, monkeypatch):
    """An unpacked bundle: the notebook next to its own models/ folder."""
    bundle = tmp_path / "Downloads" / "lab1_retrieval"
    models = _models(bundle)
    (bundle / "lab1_retrieval.ipynb").write_text("{}")
    monkeypatch.chdir(bundle)
    assert paths.models_dir() == models.resolve()


def test_nearest_models_folder_wins(no_fallback, tmp_path):
    outer = _models(tmp_path)
    inner = _models(tmp_path / "course")
    start = tmp_path / "course" / "lab"
    start.mkdir()
    assert paths.models_dir(start) == inner.resolve()
    assert paths.models_dir(tmp_path / "other") == outer.resolve()  # start need not exist


def test_a_models_folder_without_the_card_is_skipped(no_fallback, tmp_path):
    (tmp_path / "work" / "models").mkdir(parents=True)  # e.g. a student's own, empty models/
    good = _models(tmp_path)
    assert paths.models_dir(tmp_path / "work") == good.resolve()


def test_package_fallback(monkeypatch, tmp_path):
    _clean_ancestors(tmp_path)
    monkeypatch.delenv("LABTOOLS_MODELS", raising=False)
    installed = _models(tmp_path / "site-packages")
    monkeypatch.setattr(paths, "_package_models", lambda: installed)
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    monkeypatch.chdir(lonely)
    assert paths.models_dir() == installed


def test_not_found_names_where_it_looked(no_fallback, tmp_path, monkeypatch):
    _clean_ancestors(tmp_path)
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    monkeypatch.chdir(lonely)
    with pytest.raises(FileNotFoundError, match="LABTOOLS_MODELS") as error:
        paths.models_dir()
    assert str(lonely / "models") in str(error.value)
    assert paths.MARKER in str(error.value)


def test_repository_checkout_resolves_to_its_models(monkeypatch):
    """In this checkout the package fallback is the repository's models/ folder."""
    assert paths._package_models() == Path(__file__).resolve().parents[1] / "models"
