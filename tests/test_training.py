"""autograder.training.fit and the train command (Lab 2's reference triplet loss and train_triplets are tested
in tests/labs/test_lab2_triplet.py)."""

import json
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from autograder.checkpoints import CONFIGS
from autograder.labs.lab2_triplet.reference import train_triplets
from autograder.training import augment_batch, autocast_net, fit, native_bf16, shift_batch
from labtools.data import digits_dataset
from labtools.models import ConvNet, load_checkpoint


def small_set(n=200):
    images, labels = digits_dataset().tensors
    return TensorDataset(images[:n], labels[:n])


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    def loss_fn(net, images, labels):
        return torch.nn.functional.cross_entropy(net(images), labels)

    torch.manual_seed(0)
    straight = ConvNet()
    fit(straight, small_set(), loss_fn, loss_name="ce", epochs=2, batch_size=50, progress=False)
    torch.manual_seed(0)
    interrupted = ConvNet()
    fit(interrupted, small_set(), loss_fn, loss_name="ce", epochs=1, batch_size=50,
        checkpoint=tmp_path / "ce.pt", progress=False)
    again = ConvNet()
    fit(again, small_set(), loss_fn, loss_name="ce", epochs=2, batch_size=50, checkpoint=tmp_path / "ce.pt", progress=False)
    for a, b in zip(straight.state_dict().values(), again.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_resume_refuses_a_checkpoint_of_another_loss(tmp_path):
    def loss_fn(net, images, labels):
        return torch.nn.functional.cross_entropy(net(images), labels)

    fit(ConvNet(), small_set(60), loss_fn, loss_name="ce", epochs=1, batch_size=30, checkpoint=tmp_path / "x.pt", progress=False)
    with pytest.raises(ValueError, match="trained with 'ce', not 'triplet'"):
        fit(ConvNet(), small_set(60), loss_fn, loss_name="triplet", epochs=2, batch_size=30,
            checkpoint=tmp_path / "x.pt", progress=False)


def test_fit_refuses_epochs_it_cannot_train_to(tmp_path):
    def loss_fn(net, images, labels):
        return torch.nn.functional.cross_entropy(net(images), labels)

    for epochs in (0, -3, 1.5):
        with pytest.raises(ValueError, match=f"epochs must be a positive integer, got {epochs!r}"):
            fit(ConvNet(), small_set(60), loss_fn, loss_name="ce", epochs=epochs, progress=False)
    fit(ConvNet(), small_set(60), loss_fn, loss_name="ce", epochs=2, batch_size=30, checkpoint=tmp_path / "x.pt",
        progress=False)
    # the card would say 1 epoch of weights trained for 2
    with pytest.raises(ValueError, match="holds 2 epochs, more than the 1 asked for"):
        fit(ConvNet(), small_set(60), loss_fn, loss_name="ce", epochs=1, batch_size=30, checkpoint=tmp_path / "x.pt",
            progress=False)


@pytest.mark.parametrize("arguments, words", [
    (["nosuch"], "unknown configuration 'nosuch'; expected one of mnist_classifier"),
    (["mnist_triplet", "--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["mnist_triplet", "--precision", "fp8"], "--precision must be one of fp32, bf16, got 'fp8'"),
])
def test_train_command_refuses_bad_arguments_by_name(capsys, arguments, words):
    from autograder.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", *arguments])
    assert exit_.value.code == 2 and words in capsys.readouterr().err


@pytest.mark.parametrize("arguments, words", [
    (["rescore", "mnist_triplet", "nosuch"], "no shipped checkpoint 'nosuch' in "),
    (["check", "nowhere/lab1_retrieval.ipynb"], "no notebook at nowhere/lab1_retrieval.ipynb"),
])
def test_rescore_and_check_refuse_what_does_not_exist_by_name(capsys, arguments, words):
    from autograder.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(arguments)
    assert exit_.value.code == 2 and words in capsys.readouterr().err


def test_checkpoint_script_trains_exactly_as_the_lab2_solution(tmp_path):
    """The card of mnist_triplet is the run of the Lab 2 solution's schedule: same batches, same weights."""
    from autograder.checkpoints import CONFIGS

    config = CONFIGS["mnist_triplet"]
    torch.manual_seed(0)
    script = ConvNet()
    fit(script, small_set(), config.loss_fn, loss_name=config.loss, epochs=2, lr=config.lr,
        momentum=config.momentum, batch_size=50, seed=config.seed, progress=False)
    torch.manual_seed(0)
    solution = ConvNet()
    train_triplets(solution, small_set(), epochs=2, lr=config.lr, batch_size=50, checkpoint=None, device="cpu",
                   seed=config.seed, alpha=config.hyperparameters["alpha"])
    for a, b in zip(script.state_dict().values(), solution.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5)


def cross_entropy(net, images, labels):
    return torch.nn.functional.cross_entropy(net(images), labels)


def test_balanced_batches_have_k_images_of_each_of_p_classes():
    seen = []

    def loss_fn(net, images, labels):
        seen.append(labels)
        return cross_entropy(net, images, labels)

    fit(ConvNet(), small_set(), loss_fn, loss_name="ce", epochs=2, batch_size=40, samples_per_class=4, progress=False)
    assert len(seen) == 2 * (200 // 40)
    for labels in seen:
        assert labels.tolist() == labels[::4].repeat_interleave(4).tolist()  # 4 consecutive images per class
        assert len(set(labels[::4].tolist())) == 10
    assert not torch.equal(torch.stack(seen[:5]), torch.stack(seen[5:]))  # each epoch draws anew
    with pytest.raises(ValueError, match="not a multiple of samples_per_class"):
        fit(ConvNet(), small_set(), loss_fn, loss_name="ce", epochs=1, batch_size=30, samples_per_class=4)


def test_cosine_schedule_sets_the_lr_of_each_epoch(tmp_path):
    history = fit(ConvNet(), small_set(100), cross_entropy, loss_name="ce", epochs=4, lr=0.1, batch_size=50,
                  schedule="cosine", checkpoint=tmp_path / "ce.pt", progress=False)
    assert history["lr"] == pytest.approx([0.1, 0.1 * (1 + 2**-0.5) / 2, 0.05, 0.1 * (1 - 2**-0.5) / 2])
    _, record = load_checkpoint(tmp_path / "ce.pt")
    assert record["optimizer"]["param_groups"][0]["lr"] == pytest.approx(history["lr"][-1])
    constant = fit(ConvNet(), small_set(100), cross_entropy, loss_name="ce", epochs=2, lr=0.1, batch_size=50,
                   progress=False)
    assert constant["lr"] == [0.1, 0.1]
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        fit(ConvNet(), small_set(100), cross_entropy, loss_name="ce", epochs=1, schedule="step")


def test_warmup_cosine_rises_linearly_then_decays_like_cosine_over_the_rest():
    from autograder.training import WARMUP_EPOCHS, scheduled_lr

    assert WARMUP_EPOCHS == 5
    lrs = [scheduled_lr(0.1, "warmup_cosine", epoch, 9) for epoch in range(1, 10)]
    # 5 warm-up epochs, then the 4-epoch cosine decay of the test above
    assert lrs == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1,
                                 0.1, 0.1 * (1 + 2**-0.5) / 2, 0.05, 0.1 * (1 - 2**-0.5) / 2])
    assert scheduled_lr(0.1, "warmup_cosine", 2, 3) == pytest.approx(0.04)  # shorter runs: warm-up only


def test_hflip_mirrors_about_half_the_images_and_nothing_else():
    images = torch.randn(1000, 1, 4, 5)
    out = augment_batch(images, "hflip", torch.Generator().manual_seed(0))
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    kept = (out == images).flatten(1).all(1)
    assert bool((mirrored ^ kept).all())  # every image is either mirrored or untouched
    assert 400 < int(mirrored.sum()) < 600
    again = augment_batch(images, "hflip", torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # the coins come from the generator
    assert augment_batch(images, "none", torch.Generator()) is images
    with pytest.raises(ValueError, match="unknown augmentation 'crop'"):
        fit(ConvNet(), small_set(100), cross_entropy, loss_name="ce", epochs=1, augment="crop")


def test_resumed_training_with_schedule_balanced_batches_and_flips_equals_uninterrupted_training(tmp_path):
    options = dict(loss_name="ce", epochs=3, lr=0.05, batch_size=50, schedule="cosine", samples_per_class=5,
                   augment="hflip", seed=3, progress=False)
    torch.manual_seed(0)
    straight = ConvNet()
    fit(straight, small_set(), cross_entropy, **options)
    torch.manual_seed(0)
    interrupted = ConvNet()
    fit(interrupted, small_set(), cross_entropy, **{**options, "epochs": 1}, checkpoint=tmp_path / "ce.pt")
    again = ConvNet()
    history = fit(again, small_set(), cross_entropy, **options, checkpoint=tmp_path / "ce.pt")
    assert len(history["lr"]) == 3
    for a, b in zip(straight.state_dict().values(), again.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_shift_moves_each_image_by_its_own_offsets_and_shifts_zeros_in():
    images = torch.arange(2 * 3 * 4 * 5, dtype=torch.float).reshape(2, 3, 4, 5) + 1
    out = shift_batch(images, torch.tensor([[1, -2], [0, 3]]))  # image 0: 1 down; image 1: 2 up, 3 right
    assert torch.equal(out[0, :, 1:], images[0, :, :-1]) and not out[0, :, 0].any()
    assert torch.equal(out[1, :, :2, 3:], images[1, :, 2:, :2])
    assert not out[1, :, 2:].any() and not out[1, :, :, :3].any()
    assert torch.equal(shift_batch(images, torch.zeros(2, 2, dtype=torch.long)), images)


def test_hflip_shift_flips_then_shifts_within_two_pixels():
    images = torch.rand(500, 1, 28, 28)
    out = augment_batch(images, "hflip_shift", torch.Generator().manual_seed(0))
    assert out.shape == images.shape and torch.equal(out, augment_batch(images, "hflip_shift",
                                                                         torch.Generator().manual_seed(0)))
    # every output is some flip of its image shifted by -2..2 pixels along each axis
    flips = torch.stack([images, images.flip(-1)])  # [2, B, 1, H, W]
    found = torch.zeros(len(images), dtype=torch.bool)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            offsets = torch.tensor([[dy], [dx]]).expand(2, len(images))
            for flipped in flips:
                found |= (shift_batch(flipped, offsets) == out).flatten(1).all(1)
    assert bool(found.all())
    assert (out != images).flatten(1).any(1).float().mean() > 0.9  # almost every image moved or mirrored


def test_bf16_forward_returns_float32_close_to_fp32_and_restores_the_net():
    torch.manual_seed(0)
    net, images = ConvNet(), small_set(16).tensors[0]
    with autocast_net(net, "bf16", "cpu"):
        features, logits = net.features(images), net(images)
        assert "forward" in vars(net)
    assert features.dtype == logits.dtype == torch.float32
    assert torch.allclose(features, net.features(images), atol=3e-2)  # bfloat16 keeps about 3 digits
    assert not {"forward", "features", "embed"} & set(vars(net))  # the class's methods again
    with autocast_net(net, "fp32", "cpu"):
        assert not {"forward", "features", "embed"} & set(vars(net))  # nothing wrapped
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        fit(ConvNet(), small_set(100), cross_entropy, loss_name="ce", epochs=1, precision="fp16")


def test_bf16_training_learns_like_fp32(monkeypatch):
    """The same 8 epochs of cross-entropy in both precisions follow nearly the same losses (measured:
    within 1%, from 2.30 down to 0.72); on any CPU, bfloat16 emulated where the hardware lacks it."""
    import autograder.training as training

    monkeypatch.setattr(training, "native_bf16", lambda device: True)
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        history = fit(ConvNet(), small_set(), cross_entropy, loss_name="ce", epochs=8, lr=0.02, batch_size=20,
                      precision=precision, progress=False)
        losses[precision] = history["loss"]
    assert losses["fp32"][-1] < 0.5 * losses["fp32"][0]
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)


@pytest.mark.parametrize("capabilities, native", [
    ({"architecture": "x86_64", "avx2": True, "avx512_f": True, "avx512_bf16": False}, False),
    ({"architecture": "x86_64", "avx2": True, "avx512_bf16": True}, True),
    ({"architecture": "x86_64", "amx_bf16": True}, True),
    ({"architecture": "arm64", "neon": True, "bf16": True}, True),
    ({"architecture": "arm64", "neon": True}, False),
])
def test_native_bf16_reads_the_cpu_features_torch_reports(monkeypatch, capabilities, native):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert native_bf16(torch.device("cpu")) is native


def test_native_bf16_agrees_with_the_flags_of_proc_cpuinfo():
    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine() != "x86_64" or not cpuinfo.exists():
        pytest.skip("the flags of /proc/cpuinfo are an x86 Linux host's")
    flags = set(next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split(":")[1].split())
    assert native_bf16(torch.device("cpu")) == bool(flags & {"avx512_bf16", "amx_bf16"})
    if not torch.cuda.is_available():
        assert native_bf16(torch.device("cuda")) is False
    assert native_bf16(torch.device("meta")) is False


def test_fit_refuses_bf16_without_bfloat16_hardware_and_says_what_to_use(monkeypatch):
    import autograder.training as training

    options = dict(loss_name="ce", epochs=1, batch_size=30, progress=False)
    monkeypatch.setattr(training, "native_bf16", lambda device: False)
    with pytest.raises(ValueError, match=r"precision 'bf16' needs bfloat16 arithmetic in hardware, and the CPU \(.+\) "
                                         r"has none of AVX-512 BF16, AMX-BF16, Arm BF16: torch would emulate it, many "
                                         r"times slower than fp32 \(benchmarks/training.py measures it; .*\); "
                                         r"train in 'fp32', the default"):
        fit(ConvNet(), small_set(60), cross_entropy, precision="bf16", **options)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"not on device 'cuda' \(CUDA is not available\); train in 'fp32'"):
            fit(ConvNet(), small_set(60), cross_entropy, precision="bf16", device="cuda", **options)
    assert len(fit(ConvNet(), small_set(60), cross_entropy, precision="fp32", **options)["loss"]) == 1
    monkeypatch.setattr(training, "native_bf16", lambda device: True)
    assert len(fit(ConvNet(), small_set(60), cross_entropy, precision="bf16", **options)["loss"]) == 1


def test_train_command_refuses_bf16_without_bfloat16_hardware_before_training(capsys, monkeypatch):
    import autograder.checkpoints as checkpoints
    import autograder.training as training
    from autograder.__main__ import main

    calls = []
    monkeypatch.setattr(checkpoints, "train_checkpoint", lambda name, **options: calls.append(options) or {"scores": {}})
    monkeypatch.setattr(training, "native_bf16", lambda device: False)
    with pytest.raises(SystemExit) as exit_:
        main(["train", "mnist_triplet", "--precision", "bf16", "--device", "cpu"])
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and not calls
    assert "precision 'bf16' needs bfloat16 arithmetic in hardware" in error and "train in 'fp32', the default" in error
    monkeypatch.setattr(training, "native_bf16", lambda device: True)
    assert main(["train", "mnist_triplet", "--precision", "bf16", "--device", "cpu"]) == 0
    assert calls == [{"epochs": None, "device": "cpu", "out": checkpoints.MODELS_DIR, "precision": "bf16"}]


@pytest.mark.parametrize("name", [name for name in CONFIGS if name.startswith("fashion_")])
def test_fashion_configs_train_and_their_cards_state_the_choices(name, tmp_path, monkeypatch):
    import autograder.checkpoints as checkpoints

    config = checkpoints.CONFIGS[name]
    monkeypatch.setattr(checkpoints, "train_val_split", lambda dataset, root=None: (small_set(), small_set(50)))
    monkeypatch.setattr(checkpoints, "measure_scores", lambda *args, **kwargs: {"map_100": 0.0})
    started, real_fit = {}, checkpoints.fit

    def recording_fit(net, *args, **kwargs):
        started.update({key: value.clone() for key, value in net.state_dict().items()})
        return real_fit(net, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "fit", recording_fit)
    card = checkpoints.train_checkpoint(name, epochs=1, device="cpu", out=tmp_path, progress=False)
    if config.init is not None:  # training starts from the named checkpoint's weights
        initial = load_checkpoint(checkpoints.MODELS_DIR / f"{config.init}.pt")[0].state_dict()
        assert all(torch.equal(started[key], value) for key, value in initial.items())
    assert card["dataset"] == "FashionMNIST"
    assert config.schedule in ("cosine", "warmup_cosine")
    assert card["schedule"] == f"{config.schedule}: {checkpoints.SCHEDULES[config.schedule]}"
    assert card["hyperparameters"] == config.hyperparameters and card["optimizer"]["lr"] == config.lr
    assert card["sampler"].startswith("uniform" if config.samples_per_class is None else
                                      f"class-balanced: 10 classes x {config.samples_per_class} images")
    assert card["augmentation"] == checkpoints.AUGMENTATIONS[config.augment]
    assert card["precision"] == checkpoints.PRECISIONS["fp32"]
    init = checkpoints.MODELS_DIR / f"{config.init}.pt"
    assert card["initialization"] == ("random (torch's default, seeded)" if config.init is None else
                                      f"the weights of models/{config.init}.pt, sha256 "
                                      + json.loads(init.with_suffix(".json").read_text())["sha256"])
    _, record = load_checkpoint(tmp_path / f"{name}.pt")
    assert record["loss"] == config.loss and len(record["history"]["loss"]) == 1


def test_select_val_map_ends_with_the_best_validation_epoch(tmp_path):
    from autograder.training import best_path, validation_map

    def ce(net, images, labels):
        return torch.nn.functional.cross_entropy(net(images), labels)

    torch.manual_seed(0)
    net = ConvNet()
    val = TensorDataset(*(t[200:400] for t in digits_dataset().tensors))
    history = fit(net, small_set(), ce, loss_name="cross_entropy", epochs=4, lr=0.5, weight_decay=5e-4,
                  checkpoint=tmp_path / "ce.pt", val_set=val, select="val_map", progress=False)
    assert len(history["val_map"]) == 4 and len(history["val_accuracy"]) == 4
    best = max(range(4), key=history["val_map"].__getitem__)
    _, record = load_checkpoint(best_path(tmp_path / "ce.pt"))
    assert record["epochs"] == best + 1
    assert validation_map(net, val) == pytest.approx(history["val_map"][best], abs=1e-6)
    with pytest.raises(ValueError, match="needs a val_set"):
        fit(ConvNet(), small_set(), ce, loss_name="cross_entropy", epochs=1, select="val_map")


class TwoPhaseLoss:
    """Cross-entropy whose second term counts only from epoch 2: records the epochs it was told."""

    def __init__(self):
        self.epochs, self.epoch = [], None

    def start_epoch(self, epoch):
        self.epochs.append(epoch)
        self.epoch = epoch

    def __call__(self, net, images, labels):
        ce = cross_entropy(net, images, labels)
        second = torch.ones((), device=images.device) * (self.epoch >= 2)
        return ce + second, {"ce": ce, "second": second}


def test_terms_of_a_loss_are_averaged_per_epoch_and_the_loss_is_told_each_epoch(tmp_path):
    loss = TwoPhaseLoss()
    history = fit(ConvNet(), small_set(100), loss, loss_name="two", epochs=2, batch_size=50,
                  checkpoint=tmp_path / "t.pt", progress=False)
    assert loss.epochs == [1, 2]
    assert history["term/second"] == [0.0, 1.0]
    assert history["loss"] == pytest.approx([c + s for c, s in zip(history["term/ce"], history["term/second"])])
    resumed = TwoPhaseLoss()
    history = fit(ConvNet(), small_set(100), resumed, loss_name="two", epochs=3, batch_size=50,
                  checkpoint=tmp_path / "t.pt", progress=False)
    assert resumed.epochs == [3] and history["term/second"] == [0.0, 1.0, 1.0]  # the terms survive a resume


def test_a_trained_net_is_left_in_the_default_memory_format():
    """fit trains channels-last but returns the layout a loaded checkpoint has, so that measuring
    the net after training and measuring its saved checkpoint give the same floats."""
    net = ConvNet()
    fit(net, small_set(100), cross_entropy, loss_name="ce", epochs=1, batch_size=50, progress=False)
    assert all(p.is_contiguous() for p in net.parameters())


class AngleNet(torch.nn.Module):
    """features(x): the unit vector at the angle, in degrees, held in pixel [0, 0] of each image."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def features(self, x):
        angle = torch.deg2rad(x[:, 0, 0, 0]) * self.scale
        return torch.stack([angle.cos(), angle.sin()], dim=1)


def angle_set(degrees, labels):
    images = torch.zeros(len(degrees), 1, 28, 28)
    images[:, 0, 0, 0] = torch.tensor(degrees, dtype=torch.float32)
    return TensorDataset(images, torch.tensor(labels))


def test_validation_metrics_of_a_known_embedding():
    from autograder.evaluation import full_ranking_ap
    from autograder.labs.lab4_beyond.reference import nmi
    from autograder.training import validation_metrics

    # class 0 at 0, 10, ..., 40 degrees, class 1 at 90 ... 120 and one stray at 14 degrees: the stray is
    # the nearest other of the images at 10 and 20 (their nearest positive comes second) and sees the
    # five of class 0 before its nearest positive (rank 6); every other image's nearest is of its class
    dataset = angle_set([0, 10, 20, 30, 40, 90, 100, 110, 120, 14], [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    metrics = validation_metrics(AngleNet(), dataset)
    assert set(metrics) == {"val_map", "val_recall_at_1", "val_recall_at_2", "val_recall_at_4", "val_recall_at_8",
                            "val_p_at_1", "val_nmi"}
    assert metrics["val_p_at_1"] == pytest.approx(0.7) and metrics["val_recall_at_1"] == pytest.approx(0.7)
    assert metrics["val_recall_at_2"] == metrics["val_recall_at_4"] == pytest.approx(0.9)
    assert metrics["val_recall_at_8"] == 1.0
    features = AngleNet().features(dataset.tensors[0])
    assert metrics["val_map"] == pytest.approx(full_ranking_ap(features, dataset.tensors[1]).mean().item())
    assert metrics["val_nmi"] == pytest.approx(nmi(features, dataset.tensors[1]))
    separated = validation_metrics(AngleNet(), angle_set([0, 1, 2, 3, 4, 90, 91, 92, 93, 94], [0] * 5 + [1] * 5))
    assert all(value == pytest.approx(1.0) for value in separated.values())


def test_fit_records_metric_curves_in_the_history_and_in_tensorboard(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from autograder.training import tensorboard_dir

    images, labels = digits_dataset().tensors
    val = TensorDataset(images[200:400], labels[200:400])
    keys = {"val_accuracy", "val_map", "val_recall_at_1", "val_recall_at_2", "val_recall_at_4", "val_recall_at_8",
            "val_p_at_1", "val_nmi"}
    torch.manual_seed(0)
    history = fit(ConvNet(), small_set(), cross_entropy, loss_name="ce", epochs=2, lr=0.05, batch_size=50,
                  checkpoint=tmp_path / "ce.pt", val_set=val, progress=False)
    assert keys | {"loss", "loss_total", "epoch_s", "lr"} == set(history)
    assert all(len(history[key]) == 2 and all(0 <= v <= 1 for v in history[key]) for key in keys)
    assert history["val_recall_at_1"][-1] <= history["val_recall_at_2"][-1] <= history["val_recall_at_8"][-1]
    assert "epoch 2/2: total ce loss" in capsys.readouterr().out
    _, record = load_checkpoint(tmp_path / "ce.pt")
    assert record["history"] == history

    assert tensorboard_dir(tmp_path / "ce.pt") == tmp_path / "ce.tensorboard"
    events = EventAccumulator(str(tmp_path / "ce.tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == set(history)
    for key, values in history.items():
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx(values, rel=1e-6)  # float32 in the event file

    # resumed for a third epoch: the history and the event files hold each epoch once
    history = fit(ConvNet(), small_set(), cross_entropy, loss_name="ce", epochs=3, lr=0.05, batch_size=50,
                  checkpoint=tmp_path / "ce.pt", val_set=val, progress=False)
    events = EventAccumulator(str(tmp_path / "ce.tensorboard"))
    events.Reload()
    assert len(history["val_nmi"]) == 3 and [s.step for s in events.Scalars("val_nmi")] == [1, 2, 3]


def test_the_tensorboard_server_serves_a_fresh_runs_curves(tmp_path):
    """``tensorboard --logdir <stem>.tensorboard`` (the program, as a student runs it) lists the run's
    scalars over its HTTP API, with one value per epoch."""
    images, labels = digits_dataset().tensors
    torch.manual_seed(0)
    history = fit(ConvNet(), small_set(), cross_entropy, loss_name="ce", epochs=2, lr=0.05, batch_size=50,
                  checkpoint=tmp_path / "ce.pt", val_set=TensorDataset(images[200:300], labels[200:300]),
                  progress=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("tensorboard")), "--logdir",
                               str(tmp_path / "ce.tensorboard"), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, tags = time.monotonic() + 60, {}
        while time.monotonic() < deadline and not tags:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/tags", timeout=5) as reply:
                    tags = json.load(reply)
            except OSError:
                time.sleep(0.5)
        assert tags, "tensorboard did not answer within 60 s"
        (run,) = tags  # one run: the event files of the folder itself
        assert set(tags[run]) == set(history)
        url = f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?run={run}&tag=val_recall_at_1"
        with urllib.request.urlopen(url, timeout=5) as reply:
            points = json.load(reply)  # [[wall time, step, value], ...]
        assert [step for _, step, _ in points] == [1, 2]
        assert [value for _, _, value in points] == pytest.approx(history["val_recall_at_1"], rel=1e-6)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_fit_measures_an_embedding_net_without_class_scores_and_refuses_a_tiny_val_set(tmp_path, monkeypatch):
    from labtools.models import EmbeddingNet

    monkeypatch.chdir(tmp_path)  # where a SummaryWriter without a folder would write (./runs)

    def proxies(net, images, labels):
        return torch.nn.functional.cross_entropy(net.features(images) @ net.weight.T / 0.1, labels)

    images, labels = digits_dataset().tensors
    torch.manual_seed(0)
    history = fit(EmbeddingNet(), small_set(100), proxies, loss_name="proxies", epochs=1, batch_size=50,
                  val_set=TensorDataset(images[200:300], labels[200:300]), progress=False)
    assert "val_accuracy" not in history and len(history["val_recall_at_8"]) == len(history["val_nmi"]) == 1
    assert not list(tmp_path.iterdir())  # no checkpoint: no event files anywhere
    with pytest.raises(ValueError, match=r"val_set must hold more than 8 images \(Recall@8 looks among the 8 "
                                         r"nearest others of each\), got 5"):
        fit(ConvNet(), small_set(100), cross_entropy, loss_name="ce", epochs=1,
            val_set=TensorDataset(images[:5], labels[:5]))
