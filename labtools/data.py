"""Datasets of the course: MNIST and Fashion-MNIST through torchvision, and the offline digits.

Images are float32 tensors of shape ``[N, 1, 28, 28]`` with values in ``[0, 1]``; labels are int64
tensors of shape ``[N]``. Datasets are :class:`torch.utils.data.TensorDataset` objects, so
``images, labels = dataset.tensors`` gives both at once.

Where the data lives is resolved by :func:`resolve_data_root`: the ``root`` argument, then the
``LABTOOLS_DATA`` environment variable, then :data:`DEFAULT_DATA_ROOT`. The folder holds the raw
files in torchvision's layout (``<root>/MNIST/raw/*.gz``, ``<root>/FashionMNIST/raw/*.gz``).
A read-only root is fine: the archives are linked into a writable cache and extracted there.
Processes may share the cache and start at once: it is written under temporary names renamed into
place, under a lock file. :func:`warm_cache` fills it ahead, after which it may be read-only too.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Iterable, Iterator

try:
    import fcntl
except ImportError:  # Windows: no lock; the caches' atomic renames alone keep them whole
    fcntl = None

import torch
from torch.utils.data import Sampler, TensorDataset

from labtools.paths import CACHE_ROOT, DEFAULT_DATA_ROOT, resolve_data_root
from labtools.runtime import retain_freed_memory
from labtools.validate import check_positive_int

__all__ = [
    "DATASETS",
    "DEFAULT_DATA_ROOT",
    "STAGING_ROOT",
    "DataNotFoundError",
    "resolve_data_root",
    "load_images",
    "warm_cache",
    "fixed_test_indices",
    "fixed_test_set",
    "train_val_split",
    "digits_dataset",
    "BalancedBatchSampler",
    "DeviceLoader",
    "tensor_digest",
]

#: The datasets the kit knows, by the name of their torchvision class.
DATASETS = ("MNIST", "FashionMNIST")

#: The four raw files torchvision expects in ``<root>/<name>/raw/`` for either dataset.
RAW_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

#: Writable folder where archives of a read-only root are linked and extracted.
STAGING_ROOT = CACHE_ROOT / "staged"

#: Prefix of the temporary names that writers of the caches build under and rename into place.
_TMP = ".tmp-"
#: Per staged folder: a lock serialising this process's threads, and the lock file's descriptor
#: while a thread holds it (see :func:`_exclusive`).
_THREAD_LOCKS: dict[str, threading.RLock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()
_HELD: dict[str, int | None] = {}

#: Seeds of the fixed test set and of the train/validation split; changing them changes every score.
TEST_SET_SEED = 0
SPLIT_SEED = 0


class DataNotFoundError(FileNotFoundError):
    """The raw files of a dataset are neither on disk nor downloadable."""


def _check_name(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return name


def _present(folder: Path) -> list[str]:
    """Names of the raw files (archive or extracted) found in ``folder``."""
    return [f for f in RAW_FILES if (folder / f).exists() or (folder / f[: -len(".gz")]).exists()]


def _raw_key(root: Path, name: str) -> str:
    """The name of ``root``'s ``name`` files in the cache: a hash of the resolved raw folder."""
    return hashlib.sha256(str((root / name / "raw").resolve()).encode()).hexdigest()[:16]


def _staging_path(root: Path, name: str) -> Path:
    """Where :func:`_stage` puts ``root``'s files of ``name``, without writing anything."""
    if len(_present(root / name / "raw")) < len(RAW_FILES):
        return root
    return STAGING_ROOT / _raw_key(root, name)


def _temporary(path: Path) -> Path:
    """A unique temporary name beside ``path``: a writer killed half-way leaves only this name."""
    return path.with_name(f"{_TMP}{uuid.uuid4().hex}-{path.name}")


@contextlib.contextmanager
def _exclusive(root: Path, name: str) -> Iterator[bool]:
    """Hold the lock of ``root``'s ``name`` files (``STAGING_ROOT/<hash>.lock``) while writing them.

    Yields whether the lock is held: it is not where no lock file can be made (a read-only cache,
    a system without ``fcntl``), and the caches' atomic renames alone keep them whole then. The lock
    is re-entrant within a thread and serialises the threads of a process, so only one writer of
    these files runs at a time anywhere and its temporary names can be cleared as leftovers.
    """
    key = _raw_key(root, name)
    with _THREAD_LOCKS_GUARD:
        thread_lock = _THREAD_LOCKS.setdefault(key, threading.RLock())
    with thread_lock:
        if key in _HELD:  # this thread holds it already
            yield _HELD[key] is not None
            return
        handle = None
        if fcntl is not None:
            try:
                STAGING_ROOT.mkdir(parents=True, exist_ok=True)
                handle = os.open(STAGING_ROOT / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o666)
                fcntl.flock(handle, fcntl.LOCK_EX)
            except OSError:  # a read-only cache: nothing will be written there either
                if handle is not None:
                    os.close(handle)
                handle = None
        _HELD[key] = handle
        try:
            yield handle is not None
        finally:
            del _HELD[key]
            if handle is not None:
                os.close(handle)  # releases the lock


def _clear_leftovers(folder: Path, patterns: tuple[str, ...] = (f"{_TMP}*",)) -> None:
    """Remove the temporary files that killed writers left in ``folder`` (call it holding the lock)."""
    for pattern in patterns:
        try:
            entries = list(folder.glob(pattern))
        except OSError:
            continue
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()


def _stage(root: Path, name: str) -> Path:
    """Return a writable root for torchvision that holds ``root``'s raw files of ``name``.

    The data root is never written to when it already has the files (it may be a shared,
    read-only folder): they are symlinked into a private folder under :data:`STAGING_ROOT`,
    where torchvision checks the archives' MD5 and extracts them. When the files are missing,
    ``root`` itself is returned, so that a download lands in the data root.

    A folder staged already is returned without writing anything (the cache may be mounted
    read-only). Otherwise each link is made under a temporary name and renamed into place, under
    the lock of :func:`_exclusive`, so processes staging the same root at once all succeed.
    Raises :class:`OSError` when the cache cannot be written.
    """
    staged_root = _staging_path(root, name)
    if staged_root == root:
        return root
    raw, staged_raw = root / name / "raw", staged_root / name / "raw"
    prefixes = tuple(f.split(".")[0] for f in RAW_FILES)
    sources = [source for source in raw.iterdir() if source.name.startswith(prefixes)]
    if all((staged_raw / source.name).exists() for source in sources):
        return staged_root
    with _exclusive(root, name):
        staged_raw.mkdir(parents=True, exist_ok=True)
        for source in sources:
            target = staged_raw / source.name
            if not target.exists():  # absent, or a dangling link: replaced
                link = _temporary(target)
                link.symlink_to(source.resolve())
                try:
                    os.replace(link, target)
                except OSError:
                    link.unlink()
                    raise
    return staged_root


def _check_archive(archive: Path, md5: str) -> None:
    from torchvision.datasets.utils import check_integrity

    if not check_integrity(str(archive), md5):
        raise DataNotFoundError(
            f"{archive} is corrupt: its MD5 is not torchvision's {md5}. "
            "Replace it with a verified copy (see MD5SUMS beside the course data)."
        )


def _extract_verified(root: Path, name: str, dataset_class) -> None:
    """Extract ``root``'s archives of ``name`` whose MD5 matches torchvision's, without any network.

    torchvision only extracts archives inside ``download=True``; doing it here lets
    ``download=False`` read verified local archives. An archive with a wrong MD5 is an error
    that names it (a truncated copy is the usual cause), never silently replaced.

    Each archive is extracted by torchvision into a temporary folder beside it, and the file is
    renamed into place: a reader never sees half a file, and a process killed while extracting
    leaves only the temporary folder, which the next writer holding the lock removes. Raises
    :class:`OSError` when the folder cannot be written.
    """
    from torchvision.datasets.utils import extract_archive

    raw = root / name / "raw"
    for filename, md5 in dataset_class.resources:
        archive, extracted = raw / filename, raw / Path(filename).stem
        if not archive.exists() or extracted.exists():
            continue
        _check_archive(archive, md5)
        scratch = _temporary(extracted)
        scratch.mkdir()
        try:
            extract_archive(str(archive), str(scratch))
            os.replace(scratch / extracted.name, extracted)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _missing_message(root: Path, name: str, reason: str) -> str:
    files = "\n".join(f"  {root / name / 'raw' / f}" for f in RAW_FILES)
    return (
        f"{name} is not available under the data root {root} ({reason}).\n"
        f"Put these four files there (torchvision's layout):\n{files}\n"
        "or point LABTOOLS_DATA (or the root argument) at a folder that has them."
    )


#: SHA-256 of each split as torchvision decodes it (uint8 images, then int64 labels): these files
#: never change, so a decoded split that differs is corrupt, and the tensor cache cannot be forged.
SPLIT_SHA256 = {
    ("MNIST", True): "d18cfd466eb143ac1097fde604dba9eec4116885869d04cc648b510949f9e88c",
    ("MNIST", False): "a0863a96c44e5666edbb30c4071ee79ca0514c621e6349c5967fc78e7305c891",
    ("FashionMNIST", True): "1f243a60b4b748a44c48b9a6f6907be2a08bee3e4e226f0e86fbde8e147b745a",
    ("FashionMNIST", False): "9a494dc49efeb996f4076c469b31cd058152067b1594ba6ab85dd739fce3775e",
}


def _split_digest(data: torch.Tensor, targets: torch.Tensor) -> str:
    digest = hashlib.sha256(data.contiguous().numpy().tobytes())
    digest.update(targets.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _cached_split(path: Path, name: str, train: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The decoded split saved by an earlier :func:`load_images`, if it is there and intact."""
    try:
        saved = torch.load(path, weights_only=True)
        data, targets = saved["data"], saved["targets"]
        if data.dtype == torch.uint8 and targets.dtype == torch.int64 and \
                _split_digest(data, targets) == SPLIT_SHA256[(name, train)]:
            return data, targets
    except Exception:  # missing, truncated or foreign: decode again
        pass
    return None


def _read_idx(content: bytes, path: Path) -> torch.Tensor:
    """The uint8 tensor of an IDX file's bytes (the format of MNIST's files), as torchvision reads it."""
    if len(content) < 4 or content[:2] != b"\0\0" or content[2] != 8 or not 1 <= content[3] <= 3:
        raise DataNotFoundError(f"{path} is corrupt: it is not an IDX file of bytes")
    dims = [int.from_bytes(content[4 * i + 4 : 4 * i + 8], "big") for i in range(content[3])]
    offset, size = 4 + 4 * len(dims), 1
    for dim in dims:
        size *= dim
    if len(content) != offset + size:
        raise DataNotFoundError(f"{path} is corrupt: it holds {len(content) - offset} bytes, not {size}")
    return torch.frombuffer(bytearray(content), dtype=torch.uint8, offset=offset).view(*dims)


def _decode_in_memory(root: Path, name: str, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(data, targets)`` of one split read straight from ``root``'s raw files, writing nothing.

    The fallback where the cache cannot be written (a read-only mount that was not warmed): the
    archives' MD5 is checked as for extraction, and the split against :data:`SPLIT_SHA256`.
    """
    from torchvision import datasets

    raw = root / name / "raw"
    md5 = dict(getattr(datasets, name).resources)
    tensors = []
    for kind in ("images-idx3", "labels-idx1"):
        extracted = raw / f"{'train' if train else 't10k'}-{kind}-ubyte"
        archive = extracted.with_name(extracted.name + ".gz")
        if extracted.exists():
            path, content = extracted, extracted.read_bytes()
        else:
            _check_archive(archive, md5[archive.name])
            path, content = archive, gzip.decompress(archive.read_bytes())
        tensors.append(_read_idx(content, path))
    data, targets = tensors[0], tensors[1].to(torch.int64)
    if _split_digest(data, targets) != SPLIT_SHA256[(name, train)]:
        raise DataNotFoundError(
            f"the {name} files under {raw} are corrupt (their content is not the official "
            f"{'training' if train else 'test'} split). Replace them with verified copies."
        )
    return data, targets


def _decode_split(root: Path, work_root: Path, name: str, train: bool, download: bool):
    """``(data, targets)`` of one split through torchvision's dataset class (uint8, int64)."""
    from torchvision import datasets

    dataset_class = getattr(datasets, name)
    try:
        _extract_verified(work_root, name, dataset_class)
    except DataNotFoundError:
        raise
    except OSError:  # the folder cannot be written
        if work_root != root:  # staged: the data root has every file, decode them in memory
            return _decode_in_memory(root, name, train)
        # files are missing: torchvision names them below, or downloads them
    try:
        dataset = dataset_class(str(work_root), train=train, download=download)
    except RuntimeError as error:  # torchvision: "Dataset not found. You can use download=True ..."
        raise DataNotFoundError(_missing_message(root, name, "download disabled")) from error
    except Exception as error:  # network errors of every kind when downloading offline
        raise DataNotFoundError(
            _missing_message(root, name, f"download failed: {type(error).__name__}: {error}")
        ) from error
    data, targets = dataset.data, dataset.targets.to(torch.int64)
    if _split_digest(data, targets) != SPLIT_SHA256[(name, train)]:
        raise DataNotFoundError(
            f"the extracted {name} files under {work_root / name / 'raw'} are corrupt (their content is not "
            f"the official {'training' if train else 'test'} split). Delete the extracted files (not the "
            ".gz archives) there and load again."
        )
    return data, targets


def _cache_file(work_root: Path, name: str, train: bool) -> Path:
    return work_root / name / "labtools" / f"{'train' if train else 'test'}.pt"


def _save_split(cache: Path, split: tuple[torch.Tensor, torch.Tensor]) -> bool:
    """Save a decoded split to ``cache`` under a temporary name renamed into place; False if it cannot."""
    temporary = _temporary(cache)
    try:
        cache.parent.mkdir(exist_ok=True)
        torch.save({"data": split[0], "targets": split[1]}, temporary)
        os.replace(temporary, cache)
        return True
    except (OSError, RuntimeError):  # read-only or full (torch reports a short write as RuntimeError)
        with contextlib.suppress(OSError):
            temporary.unlink()
        return False


def _load_split(root: Path, name: str, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The uint8 images and int64 labels of a split: from the cache, else decoded and cached."""
    split = _cached_split(_cache_file(_staging_path(root, name), name, train), name, train)
    if split is not None:  # the usual case, and all a read-only warmed cache allows: nothing written
        return split
    with _exclusive(root, name) as locked:  # one process at a time stages, extracts and decodes
        try:
            work_root = _stage(root, name)
        except OSError:  # a read-only cache that was not warmed
            return _decode_in_memory(root, name, train)
        cache = _cache_file(work_root, name, train)
        split = _cached_split(cache, name, train)  # the process that held the lock before saved it
        if split is not None:
            return split
        if locked:  # no other writer is running: what temporary files remain are a killed one's
            _clear_leftovers(work_root / name / "raw")
            _clear_leftovers(cache.parent, (f"{_TMP}*", "*.tmp"))
        split = _decode_split(root, work_root, name, train, download)
        _save_split(cache, split)  # where it cannot, the next process decodes again
        return split


def load_images(
    name: str, train: bool, root: str | os.PathLike | None = None, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a whole split of MNIST or Fashion-MNIST through torchvision's dataset class.

    Returns ``(images, labels)``: float32 ``[N, 1, 28, 28]`` in ``[0, 1]`` and int64 ``[N]``
    (N = 60,000 for ``train=True``, 10,000 otherwise). Raises :class:`DataNotFoundError`, naming
    the folder and the four expected files, when the files are missing and cannot be downloaded.

    The decoded split is checked against :data:`SPLIT_SHA256` and saved beside the extracted files
    (``<name>/labtools/<split>.pt``); later calls read that file, checked the same way, instead of
    importing torchvision (about 2 s of every fresh process).

    Processes may load at once on an empty cache: every file of the cache is written under a
    temporary name and renamed into place, under a lock file beside the staged folder. A cache
    that holds the split already is only read, so it may be mounted read-only (see
    :func:`warm_cache`); where the cache cannot be written, the split is decoded in memory.
    """
    _check_name(name)
    root = resolve_data_root(root)
    data, targets = _load_split(root, name, train, download)
    return data.unsqueeze(1).to(torch.float32).div_(255.0), targets.clone()


def warm_cache(
    names: str | Iterable[str] = DATASETS,
    root: str | os.PathLike | None = None,
    splits: str | Iterable[str] = ("train", "test"),
) -> dict[str, list[str]]:
    """Stage and decode every split of ``names`` that the data root holds, so later loads only read.

    For each dataset whose four raw files are under ``root`` (resolved by
    :func:`resolve_data_root`), its archives are linked into :data:`STAGING_ROOT`, extracted, and
    each of ``splits`` (``"train"``, ``"test"``) is decoded, checked and saved to the cache. A
    dataset with none of its raw files is skipped; nothing is ever downloaded. Afterwards the data
    root and the cache folder may be mounted read-only: :func:`load_images` reads the cache
    without writing anything. Safe to run while other processes load the same data.

    Returns the splits warmed by dataset name, e.g. ``{"MNIST": ["train", "test"]}``. Raises
    :class:`ValueError` for an unknown dataset or split, :class:`DataNotFoundError` for a dataset
    with only some of its raw files (naming the four) or a corrupt one, and :class:`OSError` when
    the cache cannot be written.
    """
    names = [names] if isinstance(names, str) else list(names)
    splits = [splits] if isinstance(splits, str) else list(splits)
    for name in names:
        _check_name(name)
    for split in splits:
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    root = resolve_data_root(root)
    warmed = {}
    for name in names:
        if not _present(root / name / "raw"):
            continue
        if len(_present(root / name / "raw")) < len(RAW_FILES):
            raise DataNotFoundError(_missing_message(root, name, "some of its files are missing"))
        for split in splits:
            _load_split(root, name, split == "train", download=False)
            cache = _cache_file(_staging_path(root, name), name, split == "train")
            if _cached_split(cache, name, split == "train") is None:
                raise OSError(f"could not save the decoded {name} {split} split to {cache}: "
                              f"is the cache folder {STAGING_ROOT} writable?")
        warmed[name] = splits
    return warmed


def fixed_test_indices(labels: torch.Tensor, per_class: int = 100, seed: int = TEST_SET_SEED) -> torch.Tensor:
    """Indices of the fixed test set: the first ``per_class`` images of each class, shuffled.

    ``labels`` is the int64 ``[N]`` label vector of the official test split. The result is an
    int64 ``[C * per_class]`` vector in a seeded random order, so any prefix (the labs use the
    first 100 as queries) is a random sample. It depends on nothing but the labels and the seed.
    """
    classes = torch.unique(labels)
    chosen = []
    for c in classes.tolist():
        members = torch.nonzero(labels == c).flatten()
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} images, fewer than per_class={per_class}")
        chosen.append(members[:per_class])
    chosen = torch.cat(chosen)
    generator = torch.Generator().manual_seed(seed)
    return chosen[torch.randperm(len(chosen), generator=generator)]


def fixed_test_set(
    name: str = "MNIST", root: str | os.PathLike | None = None, per_class: int = 100, download: bool = True
) -> TensorDataset:
    """The course's fixed test set: 100 test images of each class in a seeded random order.

    Returns a TensorDataset of images ``[C * per_class, 1, 28, 28]`` and labels ``[C * per_class]``.
    """
    images, labels = load_images(name, train=False, root=root, download=download)
    index = fixed_test_indices(labels, per_class)
    return TensorDataset(images[index], labels[index])


def train_val_split(
    name: str = "MNIST",
    root: str | os.PathLike | None = None,
    val_size: int = 6000,
    seed: int = SPLIT_SEED,
    download: bool = True,
) -> tuple[TensorDataset, TensorDataset]:
    """The seeded split of the official training set: 54,000 training and 6,000 validation images."""
    images, labels = load_images(name, train=True, root=root, download=download)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    val, train = order[:val_size], order[val_size:]
    return TensorDataset(images[train], labels[train]), TensorDataset(images[val], labels[val])


def digits_dataset() -> TensorDataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes), upscaled to ``[N, 1, 28, 28]``.

    Needs no file and no network: the offline stand-in for MNIST in tests and demos.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = torch.nn.functional.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    return TensorDataset(images.clamp_(0.0, 1.0), torch.as_tensor(digits.target, dtype=torch.int64))


def tensor_digest(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's bytes: pins a fixed index set across machines."""
    return hashlib.sha256(tensor.contiguous().cpu().numpy().tobytes()).hexdigest()


class BalancedBatchSampler(Sampler[list[int]]):
    """Class-balanced batches: ``classes_per_batch`` classes x ``samples_per_class`` images each.

    Yields lists of ``P * K`` dataset indices. Each epoch draws classes and images without
    replacement where it can (an image repeats only inside a class with fewer than K images).
    ``len(sampler)`` batches make one epoch, about ``N / (P * K)``.
    """

    def __init__(self, labels: torch.Tensor, classes_per_batch: int, samples_per_class: int, seed: int = 0):
        labels = torch.as_tensor(labels)
        if labels.ndim != 1:
            raise ValueError(f"labels must be a 1-d tensor, got shape {tuple(labels.shape)}")
        self.by_class = {int(c): torch.nonzero(labels == c).flatten() for c in torch.unique(labels)}
        if classes_per_batch > len(self.by_class):
            raise ValueError(
                f"classes_per_batch={classes_per_batch} exceeds the {len(self.by_class)} classes in labels"
            )
        if classes_per_batch < 1 or samples_per_class < 1:
            raise ValueError("classes_per_batch and samples_per_class must be positive")
        self.classes_per_batch = classes_per_batch
        self.samples_per_class = samples_per_class
        self.generator = torch.Generator().manual_seed(seed)
        self.num_batches = max(1, len(labels) // (classes_per_batch * samples_per_class))

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        g, k = self.generator, self.samples_per_class
        queues = {c: idx[torch.randperm(len(idx), generator=g)] for c, idx in self.by_class.items()}
        offsets = dict.fromkeys(queues, 0)
        classes = torch.tensor(list(queues))
        for _ in range(self.num_batches):
            batch = []
            for c in classes[torch.randperm(len(classes), generator=g)[: self.classes_per_batch]].tolist():
                queue = queues[c]
                if offsets[c] + k > len(queue):
                    queues[c] = queue = queue[torch.randperm(len(queue), generator=g)]
                    offsets[c] = 0
                take = queue[offsets[c] : offsets[c] + k]
                if len(take) < k:  # a class smaller than K: repeat its images
                    take = take[torch.randint(len(take), (k,), generator=g)]
                offsets[c] += k
                batch.extend(take.tolist())
            yield batch


class DeviceLoader:
    """Batches of a tensor dataset that lives entirely on one device.

    ``images [N, ...]`` and ``labels [N]`` are moved to ``device`` once; each iteration yields
    ``(images[b], labels[b])`` for batches ``b`` of ``batch_size`` indices drawn without
    replacement, so no Python data loading stands in an epoch's way. The order of epoch ``e`` is
    seeded by ``seed + e``: iterating advances the epoch, and :meth:`set_epoch` sets it (to
    resume training where it stopped). A loader on the CPU calls
    :func:`labtools.runtime.retain_freed_memory`, so the training steps it feeds reuse the memory
    of the steps before them instead of page-faulting it afresh.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int = 100,
        shuffle: bool = True,
        drop_last: bool = False,
        device: str | torch.device | None = None,
        seed: int = 0,
    ):
        if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
            raise TypeError(f"images and labels must be torch tensors, got {type(images).__name__} "
                            f"and {type(labels).__name__}")
        if images.ndim < 1 or labels.ndim != 1:
            raise ValueError(f"images must be [N, ...] and labels [N], got shapes {tuple(images.shape)} "
                             f"and {tuple(labels.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"images and labels differ in length: {len(images)} vs {len(labels)}")
        check_positive_int(batch_size, "batch_size")
        self.device = torch.device(device) if device is not None else images.device
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.epoch = seed, 0
        if self.device.type == "cpu":
            retain_freed_memory()

    @classmethod
    def from_dataset(cls, dataset: TensorDataset, **kwargs) -> "DeviceLoader":
        images, labels = dataset.tensors
        return cls(images, labels, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.images[index], self.labels[index]
