"""labtools.data: data root, real MNIST, fixed test set, split, samplers and loaders."""

import os
import stat
from pathlib import Path

import pytest
import torch

from labtools import data
from labtools.data import (
    BalancedBatchSampler,
    DataNotFoundError,
    DeviceLoader,
    digits_dataset,
    fixed_test_indices,
    fixed_test_set,
    resolve_data_root,
    tensor_digest,
    train_val_split,
)

#: SHA-256 of the fixed test set's indices into the official MNIST test split; pins them everywhere.
FIXED_MNIST_INDICES_SHA256 = "8bab98e6fa17ee4c38d0f09ee6f0906ee62735a8adbc2fbaa9b7917a780cbd4c"


def test_data_root_argument_beats_environment_beats_default(monkeypatch, tmp_path):
    monkeypatch.setenv("LABTOOLS_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("LABTOOLS_DATA")
    assert resolve_data_root() == data.DEFAULT_DATA_ROOT


def test_missing_files_name_the_folder_and_the_four_files(tmp_path):
    with pytest.raises(DataNotFoundError) as error:
        data.load_images("MNIST", train=False, root=tmp_path, download=False)
    message = str(error.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    for name in data.RAW_FILES:
        assert name in message


def test_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    from torchvision import datasets

    def offline(self):
        raise OSError("network is unreachable")

    monkeypatch.setattr(datasets.MNIST, "download", offline)
    with pytest.raises(DataNotFoundError, match="download failed: OSError: network is unreachable"):
        data.load_images("MNIST", train=False, root=tmp_path, download=True)


def test_download_false_extracts_verified_archives_into_a_fresh_cache(tmp_path, require_mnist, monkeypatch):
    """A clean machine: only the read-only archives exist, nothing is extracted yet, no network."""
    monkeypatch.setattr(data, "STAGING_ROOT", tmp_path / "staging")
    images, labels = data.load_images("MNIST", train=False, download=False)
    assert images.shape == (10000, 1, 28, 28) and labels.shape == (10000,)


def test_decoded_split_is_cached_and_read_without_torchvision(tmp_path, require_mnist):
    """A second process reads the checked tensor cache and never imports torchvision (about 2 s)."""
    import subprocess
    import sys

    code = ("import sys; from labtools.data import load_images; images, labels = load_images('MNIST', train=False); "
            "print('torchvision' in sys.modules, float(images.sum()), int(labels.sum()))")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    first, second = (subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                    check=True).stdout.split() for _ in range(2))
    assert first[0] == "True" and second[0] == "False"
    assert first[1:] == second[1:]
    assert list((tmp_path / "cache").rglob("MNIST/labtools/test.pt"))


def test_forged_tensor_cache_is_ignored(tmp_path, require_mnist, monkeypatch):
    """Whatever a notebook writes into the cache, the split loaded is the official one."""
    monkeypatch.setattr(data, "STAGING_ROOT", tmp_path / "staging")
    images, labels = data.load_images("MNIST", train=False)
    cache = next((tmp_path / "staging").rglob("MNIST/labtools/test.pt"))
    forged = {"data": torch.zeros(10000, 28, 28, dtype=torch.uint8), "targets": torch.zeros(10000, dtype=torch.int64)}
    torch.save(forged, cache)
    again_images, again_labels = data.load_images("MNIST", train=False)
    assert torch.equal(again_images, images) and torch.equal(again_labels, labels)
    assert torch.load(cache, weights_only=True)["data"].sum() > 0  # rewritten from the archives


def test_corrupt_extracted_file_is_named(tmp_path, require_mnist, monkeypatch):
    monkeypatch.setattr(data, "STAGING_ROOT", tmp_path / "staging")
    data.load_images("MNIST", train=False)
    raw = next((tmp_path / "staging").rglob("MNIST/raw"))
    (raw.parent / "labtools" / "test.pt").unlink()
    extracted = raw / "t10k-labels-idx1-ubyte"
    content = bytearray(extracted.read_bytes())
    content[-1] = (content[-1] + 1) % 10
    extracted.write_bytes(bytes(content))
    with pytest.raises(DataNotFoundError, match="corrupt") as error:
        data.load_images("MNIST", train=False)
    assert str(raw) in str(error.value)


def test_corrupt_archive_is_named(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.RAW_FILES:
        (raw / name).write_bytes(b"truncated")
    monkeypatch.setattr(data, "STAGING_ROOT", tmp_path / "staging")
    with pytest.raises(DataNotFoundError, match=r"train-images-idx3-ubyte.gz is corrupt: its MD5"):
        data.load_images("MNIST", train=False, root=tmp_path, download=False)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown dataset 'CIFAR10'"):
        data.load_images("CIFAR10", train=False)


def test_fixed_test_indices_are_balanced_seeded_and_shuffled():
    labels = torch.arange(10).repeat_interleave(120)
    index = fixed_test_indices(labels, per_class=100)
    assert index.shape == (1000,)
    assert torch.bincount(labels[index]).tolist() == [100] * 10
    assert torch.equal(index, fixed_test_indices(labels, per_class=100))
    assert not torch.equal(labels[index][:100], labels[index][:100].sort().values)  # a random prefix
    assert len(torch.unique(labels[index][:100])) == 10


def test_too_small_class_is_refused():
    with pytest.raises(ValueError, match="class 1 has 5 images"):
        fixed_test_indices(torch.tensor([0] * 100 + [1] * 5), per_class=100)


def test_fixed_mnist_test_set_is_pinned(require_mnist):
    images, labels = data.load_images("MNIST", train=False, download=False)
    index = fixed_test_indices(labels)
    assert tensor_digest(index) == FIXED_MNIST_INDICES_SHA256
    test = fixed_test_set("MNIST", download=False)
    assert test.tensors[0].shape == (1000, 1, 28, 28) and test.tensors[0].dtype == torch.float32
    assert 0.0 <= test.tensors[0].min() and test.tensors[0].max() <= 1.0
    assert torch.equal(test.tensors[1], labels[index])


def test_train_val_split_is_seeded_and_disjoint(require_mnist):
    train, val = train_val_split("MNIST", download=False)
    assert len(train) == 54000 and len(val) == 6000
    again, _ = train_val_split("MNIST", download=False)
    assert torch.equal(train.tensors[1][:500], again.tensors[1][:500])


def test_read_only_root_is_staged_not_written(tmp_path, require_mnist, monkeypatch):
    source = resolve_data_root() / "MNIST" / "raw"
    root = tmp_path / "ro"
    (root / "MNIST" / "raw").mkdir(parents=True)
    for name in data.RAW_FILES:
        (root / "MNIST" / "raw" / name).symlink_to((source / name).resolve())
    monkeypatch.setattr(data, "STAGING_ROOT", tmp_path / "staging")
    before = sorted(p.name for p in (root / "MNIST" / "raw").iterdir())
    images, labels = data.load_images("MNIST", train=False, root=root, download=True)
    assert images.shape == (10000, 1, 28, 28)
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == before
    assert any((tmp_path / "staging").rglob("t10k-images-idx3-ubyte"))


def test_digits_dataset_is_mnist_shaped():
    digits = digits_dataset()
    images, labels = digits.tensors
    assert images.shape == (1797, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))
    assert images.min() >= 0 and images.max() <= 1


def test_balanced_sampler_draws_p_classes_of_k_images():
    labels = digits_dataset().tensors[1]
    sampler = BalancedBatchSampler(labels, classes_per_batch=4, samples_per_class=5, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(labels) // 20
    for batch in batches:
        counts = torch.bincount(labels[batch], minlength=10)
        assert sorted(counts[counts > 0].tolist()) == [5, 5, 5, 5]
    assert batches == list(BalancedBatchSampler(labels, 4, 5, seed=1))


def test_balanced_sampler_rejects_impossible_requests():
    with pytest.raises(ValueError, match="exceeds the 2 classes"):
        BalancedBatchSampler(torch.tensor([0, 1, 1]), classes_per_batch=3, samples_per_class=1)
    with pytest.raises(ValueError, match="1-d"):
        BalancedBatchSampler(torch.zeros(2, 2), 1, 1)


def test_device_loader_covers_every_item_once_per_epoch():
    images, labels = torch.arange(23.0)[:, None], torch.arange(23)
    loader = DeviceLoader(images, labels, batch_size=5, seed=3)
    first = torch.cat([y for _, y in loader])
    assert len(loader) == 5 and sorted(first.tolist()) == list(range(23))
    second = torch.cat([y for _, y in loader])
    assert not torch.equal(first, second)
    loader.set_epoch(0)
    assert torch.equal(torch.cat([y for _, y in loader]), first)
    dropped = DeviceLoader(images, labels, batch_size=5, drop_last=True)
    assert [len(y) for _, y in dropped] == [5, 5, 5, 5]


def test_device_loader_on_the_cpu_keeps_freed_memory(monkeypatch):
    calls = []
    monkeypatch.setattr(data, "retain_freed_memory", lambda: calls.append(1))
    DeviceLoader(torch.zeros(3, 1), torch.zeros(3), device="cpu")
    assert calls == [1]
    DeviceLoader(torch.zeros(3, 1), torch.zeros(3), device="meta")  # a loader for another device
    assert calls == [1]


def test_device_loader_checks_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        DeviceLoader(torch.zeros(3, 1), torch.zeros(4))
    with pytest.raises(TypeError, match="must be torch tensors, got ndarray and Tensor"):
        DeviceLoader(torch.zeros(3, 1).numpy(), torch.zeros(3))
    with pytest.raises(ValueError, match=r"labels \[N\], got shapes \(3, 1\) and \(3, 1\)"):
        DeviceLoader(torch.zeros(3, 1), torch.zeros(3, 1))
    for batch_size in (0, 2.5, True, "10"):
        with pytest.raises(ValueError, match=f"batch_size must be a positive integer, got {batch_size!r}"):
            DeviceLoader(torch.zeros(3, 1), torch.zeros(3), batch_size=batch_size)
