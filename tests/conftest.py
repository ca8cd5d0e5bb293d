"""Shared fixtures: real MNIST where LABTOOLS_DATA has it, a skip with the reason otherwise."""

import os

import matplotlib
import pytest

matplotlib.use("Agg")


def _has_raw(name: str) -> bool:
    from labtools.data import RAW_FILES, resolve_data_root

    raw = resolve_data_root() / name / "raw"
    return all((raw / f).exists() or (raw / f.removesuffix(".gz")).exists() for f in RAW_FILES)


def _require(name: str) -> None:
    if not _has_raw(name):
        pytest.skip(f"{name} raw files not found under LABTOOLS_DATA={os.environ.get('LABTOOLS_DATA')!r}")


@pytest.fixture(scope="session")
def mnist_test():
    """The fixed MNIST test set (1,000 images), skipping when the data is not available."""
    from labtools.data import fixed_test_set

    _require("MNIST")
    return fixed_test_set("MNIST", download=False)


@pytest.fixture(scope="session")
def require_mnist():
    _require("MNIST")


@pytest.fixture(scope="session")
def require_fashion():
    _require("FashionMNIST")


@pytest.fixture(scope="session")
def require_data():
    """A function that skips the test unless the named dataset's raw files are available."""
    return _require
