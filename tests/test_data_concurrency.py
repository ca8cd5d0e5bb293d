"""labtools.data's shared caches: racing first use, killed writers, a read-only cache, warm_cache.

The grader runs several checks at once (``--jobs``) on a data root nobody has staged yet, and runs
student notebooks where the data root and the cache are mounted read-only after it warmed them.
"""

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from autograder.paths import REPO
from labtools import data
from labtools.data import RAW_FILES, resolve_data_root


#: A fresh process that waits for the go file, then loads the MNIST test split and prints its digests.
RACER = """
import os, sys, time
from pathlib import Path
from labtools import data
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.0005)
images, labels = data.load_images("MNIST", train=False, download=False)
print(data._split_digest(images.squeeze(1).mul(255).round().byte(), labels))
"""


def _read_only_root(tmp_path: Path) -> Path:
    """A data root of symlinks to the real MNIST archives (nothing extracted), as a shared mount has."""
    source = resolve_data_root() / "MNIST" / "raw"
    root = tmp_path / "ro"
    (root / "MNIST" / "raw").mkdir(parents=True)
    for name in RAW_FILES:
        (root / "MNIST" / "raw" / name).symlink_to((source / name).resolve())
    return root


def _env(tmp_path: Path, root: Path) -> dict:
    return dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), LABTOOLS_DATA=str(root),
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_processes_starting_together_on_an_empty_cache_all_get_the_split(tmp_path, require_mnist):
    """Four processes released at once stage, extract, decode and cache the same split: all succeed alike."""
    if not all((resolve_data_root() / "MNIST" / "raw" / f).exists() for f in RAW_FILES):
        pytest.skip("needs the MNIST .gz archives, not only extracted files")
    root, n = _read_only_root(tmp_path), 4
    go = tmp_path / "go"
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path / f"ready{i}"), str(go)],
                               env=_env(tmp_path, root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for i in range(n)]
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready{i}").exists() for i in range(n)):  # every one has imported torch
            assert time.monotonic() < deadline and all(r.poll() is None for r in racers), "a racer died early"
            time.sleep(0.01)
        go.touch()
        results = [r.communicate(timeout=300) for r in racers]
    finally:
        for r in racers:
            if r.poll() is None:
                r.kill()
    for racer, (out, err) in zip(racers, results):
        assert racer.returncode == 0, err
    assert [out.strip() for out, _ in results] == [data.SPLIT_SHA256[("MNIST", False)]] * n
    cache = next((tmp_path / "cache").rglob("MNIST/labtools/test.pt"))
    saved = torch.load(cache, weights_only=True)
    assert data._split_digest(saved["data"], saved["targets"]) == data.SPLIT_SHA256[("MNIST", False)]
    assert not [p for p in (tmp_path / "cache").rglob("*") if ".tmp" in p.name]  # no temporary file left


#: A process killed (as by SIGKILL) while torchvision extracts the test images: half a file written.
KILLED_EXTRACTION = """
import os
import torchvision.datasets.utils as utils
real = utils.extract_archive
def killed(from_path, to_path=None, remove_finished=False):
    if "t10k-images" not in from_path:
        return real(from_path, to_path, remove_finished)
    with open(os.path.join(to_path, os.path.basename(from_path)[:-3]), "wb") as half:
        half.write(b"\\0\\0\\x08\\x03" + bytes(1000))
        half.flush()
    os._exit(9)
utils.extract_archive = killed
from labtools import data
data.load_images("MNIST", train=False, download=False)
"""


def _check_official_test_split(images: torch.Tensor, labels: torch.Tensor) -> None:
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.float32
    as_bytes = images.squeeze(1).mul(255).round().to(torch.uint8)
    assert data._split_digest(as_bytes, labels) == data.SPLIT_SHA256[("MNIST", False)]


def test_a_process_killed_while_extracting_does_not_break_the_next_run(tmp_path, require_mnist, monkeypatch):
    root = _read_only_root(tmp_path)
    killed = subprocess.run([sys.executable, "-c", KILLED_EXTRACTION], env=_env(tmp_path, root),
                            capture_output=True, text=True)
    assert killed.returncode == 9, killed.stderr
    staged_raw = next((tmp_path / "cache").rglob("MNIST/raw"))
    assert [p.name for p in staged_raw.iterdir() if p.name.startswith(data._TMP)]  # what it left
    monkeypatch.setattr(data, "STAGING_ROOT", tmp_path / "cache" / "metric-lab" / "staged")
    _check_official_test_split(*data.load_images("MNIST", train=False, root=root, download=False))
    assert not [p for p in staged_raw.parent.rglob("*") if p.name.startswith(data._TMP)]  # cleared


def test_leftover_temporary_cache_files_are_ignored_and_cleared(tmp_path, require_mnist, monkeypatch):
    """Half-written temporary copies of the split cache (this version's and the last one's) do no harm."""
    monkeypatch.setattr(data, "STAGING_ROOT", tmp_path / "staging")
    root = _read_only_root(tmp_path)
    data.load_images("MNIST", train=False, root=root, download=False)
    cache = next((tmp_path / "staging").rglob("MNIST/labtools/test.pt"))
    content = cache.read_bytes()
    cache.unlink()
    leftovers = [cache.with_name(f"{data._TMP}0123abcd-test.pt"), cache.with_name("test.pt.4242.tmp")]
    for leftover in leftovers:
        leftover.write_bytes(content[: len(content) // 2])
    _check_official_test_split(*data.load_images("MNIST", train=False, root=root, download=False))
    assert sorted(p.name for p in cache.parent.iterdir()) == ["test.pt"]


def _refuse(path):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))


def _fail_writes(monkeypatch, under: Path, which: str) -> None:
    """Make one kind of write (under ``under`` for mkdir) fail as on a read-only file system."""
    if which == "mkdir":
        real_mkdir = os.mkdir
        monkeypatch.setattr(os, "mkdir", lambda path, *args, **kwargs: _refuse(path) if str(path).startswith(
            str(under)) else real_mkdir(path, *args, **kwargs))
    elif which == "symlink":
        monkeypatch.setattr(os, "symlink", lambda source, path, *args, **kwargs: _refuse(path))
    elif which == "extract":
        import torchvision.datasets.utils

        monkeypatch.setattr(torchvision.datasets.utils, "extract_archive", lambda path, *args, **kwargs: _refuse(path))
    elif which == "save":
        monkeypatch.setattr(torch, "save", lambda obj, path, *args, **kwargs: _refuse(path))


@pytest.mark.parametrize("which", ["mkdir", "symlink", "extract", "save"])
def test_a_cache_that_cannot_be_written_still_gives_the_split(tmp_path, require_mnist, monkeypatch, which):
    """Staging, extraction or saving refused (read-only file system): the split is decoded in memory."""
    monkeypatch.setattr(data, "STAGING_ROOT", tmp_path / "staging")
    root = _read_only_root(tmp_path)
    _fail_writes(monkeypatch, tmp_path / "staging", which)
    _check_official_test_split(*data.load_images("MNIST", train=False, root=root, download=False))
    assert bool(list((tmp_path / "staging").rglob("test.pt"))) == (which == "extract")  # saved if it can be


def _snapshot(folder: Path) -> dict:
    return {str(p): (p.lstat().st_mtime_ns, p.lstat().st_ino) for p in [folder, *folder.rglob("*")]}


def test_warm_cache_then_loading_writes_nothing(tmp_path, require_mnist, monkeypatch):
    monkeypatch.setattr(data, "STAGING_ROOT", tmp_path / "staging")
    root = _read_only_root(tmp_path)  # MNIST only: FashionMNIST is skipped
    assert data.warm_cache(root=root, splits="test") == {"MNIST": ["test"]}
    assert next((tmp_path / "staging").rglob("MNIST/labtools/test.pt"))
    before = _snapshot(tmp_path)
    for which in ("mkdir", "symlink", "extract", "save"):
        _fail_writes(monkeypatch, tmp_path, which)
    real_open, writing = os.open, os.O_WRONLY | os.O_RDWR | os.O_CREAT
    monkeypatch.setattr(os, "open", lambda path, flags, *args, **kwargs: (
        _refuse(path) if flags & writing else real_open(path, flags, *args, **kwargs)))
    monkeypatch.setattr(os, "replace", lambda source, target, **kwargs: _refuse(target))
    images, labels = data.load_images("MNIST", train=False, root=root, download=False)
    _check_official_test_split(images, labels)
    assert _snapshot(tmp_path) == before


def test_warm_cache_refuses_bad_input_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "STAGING_ROOT", tmp_path / "staging")
    with pytest.raises(ValueError, match="unknown dataset 'CIFAR10'"):
        data.warm_cache(["MNIST", "CIFAR10"], root=tmp_path)
    with pytest.raises(ValueError, match="unknown split 'val'; expected 'train' or 'test'"):
        data.warm_cache(root=tmp_path, splits=("train", "val"))
    assert data.warm_cache(root=tmp_path) == {}  # nothing there: skipped, nothing downloaded
    assert not (tmp_path / "staging").exists()
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").write_bytes(b"half a dataset")
    with pytest.raises(data.DataNotFoundError, match="some of its files are missing") as error:
        data.warm_cache("MNIST", root=tmp_path)
    for name in RAW_FILES:
        assert name in str(error.value)


def test_warm_cache_says_when_the_cache_cannot_be_written(tmp_path, require_mnist, monkeypatch):
    monkeypatch.setattr(data, "STAGING_ROOT", tmp_path / "staging")
    _fail_writes(monkeypatch, tmp_path, "save")
    with pytest.raises(OSError, match=r"could not save the decoded MNIST test split .* writable\?"):
        data.warm_cache("MNIST", root=_read_only_root(tmp_path), splits=["test"])


def _can_bind_read_only(folder: Path) -> bool:
    folder.mkdir()
    try:
        return subprocess.run(["unshare", "-rm", "sh", "-c", f"mount --bind -o ro {folder} {folder}"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.parametrize("warmed", [True, False])
def test_read_only_mounts_of_root_and_cache(tmp_path, require_mnist, warmed):
    """The grader's sandbox: data root and cache mounted read-only, after warm_cache or without it."""
    if not _can_bind_read_only(tmp_path / "probe"):
        pytest.skip("cannot make a read-only bind mount here (unshare -rm and mount --bind -o ro)")
    root = _read_only_root(tmp_path)
    cache = tmp_path / "cache" / "metric-lab"
    cache.mkdir(parents=True)
    env = _env(tmp_path, root)
    load = ("from labtools import data; images, labels = data.load_images('MNIST', train=False, download=False); "
            "print(data._split_digest(images.squeeze(1).mul(255).round().byte(), labels))")
    if warmed:
        warm = "from labtools import data; print(data.warm_cache('MNIST', splits='test'))"
        subprocess.run([sys.executable, "-c", warm], env=env, check=True, capture_output=True)
    before = _snapshot(tmp_path)
    mount = f"mount --bind -o ro {cache} {cache} && mount --bind -o ro {root} {root} && exec \"$0\" -c \"$1\""
    sandboxed = subprocess.run(["unshare", "-rm", "sh", "-c", mount, sys.executable, load], env=env,
                               capture_output=True, text=True)
    assert sandboxed.returncode == 0, sandboxed.stderr
    assert sandboxed.stdout.strip() == data.SPLIT_SHA256[("MNIST", False)]
    assert _snapshot(tmp_path) == before
