"""The one training loop of the instructor side: SGD over shuffled batches, checkpoint each epoch.

Every reference checkpoint and the reference ``train_triplets`` go through :func:`fit`; what
differs between runs is the loss and, optionally, the learning-rate schedule and class-balanced
batches.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from autograder.evaluation import full_ranking_ap
from autograder.labs.lab4_beyond.reference import nmi, recall_at_k
from labtools.data import BalancedBatchSampler, DeviceLoader
from labtools.models import ConvNet, extract_features, load_checkpoint, save_checkpoint
from labtools.neighbors import nearest

LossFn = Callable[[ConvNet, torch.Tensor, torch.Tensor], torch.Tensor]

#: Epochs of the linear warm-up of the schedule "warmup_cosine".
WARMUP_EPOCHS = 5
#: Learning-rate schedules: what :func:`scheduled_lr` sets in epoch e of E, from the base lr.
SCHEDULES = {
    "constant": "lr in every epoch",
    "cosine": "lr (1 + cos(pi (e - 1) / E)) / 2 in epoch e = 1..E: from lr down to nearly 0",
    "warmup_cosine": f"lr e / {WARMUP_EPOCHS} in the first epochs e = 1..{WARMUP_EPOCHS}, then the cosine decay over "
                     f"the other E - {WARMUP_EPOCHS}: lr (1 + cos(pi (e - {WARMUP_EPOCHS + 1}) / (E - {WARMUP_EPOCHS}))) / 2",
}


#: Augmentations of the training batches: what :func:`augment_batch` does to each batch.
AUGMENTATIONS = {
    "none": "none: the training images as they are",
    "hflip": "each training image mirrored left-right with probability 1/2 (drawn from seed + epoch)",
    "hflip_shift": "each training image mirrored left-right with probability 1/2, then shifted by -2..2 pixels "
                   "along each axis (uniform, zeros shifted in; drawn from seed + epoch)",
}
#: The largest shift of "hflip_shift", in pixels.
MAX_SHIFT = 2


def check_choice(kind: str, value: str, choices: dict) -> None:
    """Raise ValueError naming ``value`` and the keys of ``choices`` unless ``value`` is one of them."""
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; expected one of {', '.join(choices)}")


def augment_batch(images: torch.Tensor, augment: str, generator: torch.Generator) -> torch.Tensor:
    """``images [B, C, H, W]`` augmented as :data:`AUGMENTATIONS` says, with coins from ``generator`` (CPU)."""
    check_choice("augmentation", augment, AUGMENTATIONS)
    if augment == "none":
        return images
    mirrored = (torch.rand(len(images), generator=generator) < 0.5).to(images.device)
    images = torch.where(mirrored[:, None, None, None], images.flip(-1), images)
    if augment == "hflip_shift":
        images = shift_batch(images, torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (2, len(images)), generator=generator))
    return images


#: Arithmetic of the network's forward pass in training (``fit``'s ``precision``).
PRECISIONS = {
    "fp32": "float32 throughout",
    "bf16": "the network's forward pass under torch.autocast to bfloat16 (convolutions, linear layers, pooling), "
            "its outputs cast to float32: the weights, the optimizer and the loss stay in float32",
}
#: The methods of a network that a loss may call with images (ConvNet, EmbeddingNet, DVML).
NET_METHODS = ("forward", "embed", "features", "encode", "decode")
#: CPU features of bfloat16 arithmetic in hardware, as ``torch.cpu.get_capabilities()`` names them:
#: x86's AVX-512 BF16 and AMX-BF16, Arm's BF16 extension.
CPU_BF16_FEATURES = {"avx512_bf16": "AVX-512 BF16", "amx_bf16": "AMX-BF16", "bf16": "Arm BF16"}


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 in hardware: a CPU with one of :data:`CPU_BF16_FEATURES`,
    a CUDA GPU that ``torch.cuda.is_bf16_supported`` accepts without emulation (compute capability
    8.0 or more); no other device. The one probe of the hardware (tests replace it)."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        with torch.cuda.device(device):
            return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        capabilities = torch.cpu.get_capabilities()
        return any(capabilities.get(feature, False) for feature in CPU_BF16_FEATURES)
    return False


def check_precision(precision: str, device: torch.device) -> None:
    """Raise ValueError unless ``precision`` is one of :data:`PRECISIONS` and ``device`` runs it at speed.

    ``"bf16"`` is refused, not replaced by float32, where :func:`native_bf16` finds no bfloat16
    arithmetic in the hardware: torch then emulates it, far slower than float32 (README.md,
    "Checkpoints"), and a card states the precision it was trained in, which a silent fallback
    would misstate.
    """
    check_choice("precision", precision, PRECISIONS)
    if precision != "bf16" or native_bf16(device):
        return
    use = "train in 'fp32', the default"
    if device.type == "cpu":
        name = torch.cpu.get_capabilities().get("cpu_name") or "this CPU"
        raise ValueError(f"precision 'bf16' needs bfloat16 arithmetic in hardware, and the CPU ({name}) has none of "
                         f"{', '.join(CPU_BF16_FEATURES.values())}: torch would emulate it, many times slower than "
                         f"fp32 (benchmarks/training.py measures it; figures in benchmarks/README.md); {use}")
    if device.type == "cuda" and torch.cuda.is_available():
        raise ValueError(f"precision 'bf16' needs bfloat16 arithmetic in hardware, and the GPU "
                         f"({torch.cuda.get_device_name(device)}) is older than compute capability 8.0: torch would "
                         f"emulate it, slower than fp32; {use}")
    raise ValueError(f"precision 'bf16' is offered on a CPU or a CUDA GPU with bfloat16 arithmetic, not on "
                     f"device {str(device)!r}{' (CUDA is not available)' if device.type == 'cuda' else ''}; {use}")


def _as_float32(output):
    """``output`` with every floating tensor in it (alone, or in a tuple, list or dict) cast to float32."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, (tuple, list)):
        return type(output)(_as_float32(item) for item in output)
    if isinstance(output, dict):
        return {key: _as_float32(value) for key, value in output.items()}
    return output


@contextlib.contextmanager
def autocast_net(net: torch.nn.Module, precision: str, device_type: str):
    """Within the block, each method of :data:`NET_METHODS` that ``net`` has runs under
    ``torch.autocast(device_type, bfloat16)`` for ``precision="bf16"`` and returns float32 tensors,
    so that whatever the loss computes on them (distances, rankings) stays in float32. The methods
    are wrapped on the instance and restored on exit; ``"fp32"`` changes nothing."""
    check_choice("precision", precision, PRECISIONS)
    if precision == "fp32":
        yield net
        return
    wrapped = [name for name in NET_METHODS if callable(getattr(net, name, None))]

    def autocast(method):
        @functools.wraps(method)
        def run(*args, **kwargs):
            with torch.autocast(device_type, dtype=torch.bfloat16):
                return _as_float32(method(*args, **kwargs))
        return run

    for name in wrapped:
        object.__setattr__(net, name, autocast(getattr(net, name)))
    try:
        yield net
    finally:
        for name in wrapped:
            vars(net).pop(name, None)


def shift_batch(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """``images [B, C, H, W]`` with image b moved down by ``shifts[0, b]`` and right by ``shifts[1, b]``
    pixels (``shifts [2, B]`` integers, negative: up or left), zeros shifted in; one gather, no loop."""
    b, _, h, w = images.shape
    pad = int(shifts.abs().max()) if shifts.numel() else 0
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))  # [B, C, H + 2 pad, W + 2 pad]
    shifts = shifts.to(images.device)
    rows = (pad - shifts[0])[:, None] + torch.arange(h, device=images.device)  # [B, H]
    cols = (pad - shifts[1])[:, None] + torch.arange(w, device=images.device)  # [B, W]
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def scheduled_lr(lr: float, schedule: str, epoch: int, epochs: int) -> float:
    """The learning rate of epoch ``epoch`` (1-based) of ``epochs`` under ``schedule`` (see :data:`SCHEDULES`)."""
    check_choice("schedule", schedule, SCHEDULES)
    if schedule == "constant":
        return lr
    if schedule == "warmup_cosine":
        if epoch <= WARMUP_EPOCHS:
            return lr * epoch / WARMUP_EPOCHS
        epoch, epochs = epoch - WARMUP_EPOCHS, epochs - WARMUP_EPOCHS
    return lr * (1 + math.cos(math.pi * (epoch - 1) / epochs)) / 2


class BalancedLoader(DeviceLoader):
    """Class-balanced batches of a device-resident dataset: ``classes_per_batch`` classes x
    ``samples_per_class`` images, as :class:`labtools.data.BalancedBatchSampler` draws them.

    Yields ``(images [P * K, ...], labels [P * K])`` with the K images of a class consecutive.
    Epoch e is drawn with the seed ``seed + e``, like :class:`DeviceLoader`'s order, so a resumed
    run (:meth:`set_epoch`) draws the same batches as an uninterrupted one.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes_per_batch: int, samples_per_class: int,
                 device: str | torch.device | None = None, seed: int = 0):
        super().__init__(images, labels, batch_size=classes_per_batch * samples_per_class, device=device, seed=seed)
        self.sampler = BalancedBatchSampler(labels.cpu(), classes_per_batch, samples_per_class, seed=seed)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        self.sampler.generator.manual_seed(self.seed + self.epoch)
        self.epoch += 1
        for batch in self.sampler:
            index = torch.as_tensor(batch, device=self.device)
            yield self.images[index], self.labels[index]


@torch.no_grad()
def accuracy(net: ConvNet, dataset: TensorDataset, batch_size: int = 1000) -> float:
    """Fraction of ``dataset`` whose arg-max class score equals the label."""
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    images, labels = dataset.tensors
    correct = sum(
        int((net(images[i : i + batch_size].to(device)).argmax(1) == labels[i : i + batch_size].to(device)).sum())
        for i in range(0, len(labels), batch_size)
    )
    net.train(was_training)
    return correct / len(labels)


def validation_map(net: ConvNet, dataset: TensorDataset) -> float:
    """mAP of ``net``'s features on ``dataset`` ranked against itself (each image a query, itself excluded)."""
    images, labels = dataset.tensors
    return full_ranking_ap(extract_features(net, images, progress=False), labels).mean().item()


#: The K of the validation Recall@K that :func:`fit` records each epoch.
VAL_KS = (1, 2, 4, 8)


def validation_metrics(net: torch.nn.Module, dataset: TensorDataset) -> dict[str, float]:
    """Retrieval and clustering metrics of ``net.features`` on ``dataset`` (images ``[N, 1, 28, 28]``,
    labels ``[N]``), every image a query against the N - 1 others, computed on the network's device.

    Returns {"val_map": mAP (:func:`autograder.evaluation.full_ranking_ap`), "val_recall_at_<K>":
    Recall@K for K in :data:`VAL_KS` (Lab 4's ``recall_at_k``: a hit when a same-class image is among
    the K nearest, distance ties counted for it), "val_p_at_1": precision@1, the fraction of images
    whose nearest other image (ties by index, :func:`labtools.neighbors.nearest`) has their class,
    equal to Recall@1 but for ties, "val_nmi": NMI of k-means with as many clusters as classes
    (Lab 4's ``nmi``, seed 0)}. The features are extracted once, in batches; Recall@K holds an
    [N, N] distance matrix (144 MB for the 6,000 validation images).
    """
    device = next(net.parameters()).device
    images, labels = dataset.tensors
    features = extract_features(net, images, device=device, progress=False).to(device)  # [N, D]
    labels = labels.to(device)
    _, index = nearest(features, features, 1, exclude_self=True)  # [N, 1]
    metrics = {"val_map": full_ranking_ap(features, labels).mean().item()}
    metrics.update({f"val_recall_at_{k}": value for k, value in recall_at_k(features, labels, VAL_KS).items()})
    metrics["val_p_at_1"] = (labels[index[:, 0]] == labels).double().mean().item()
    metrics["val_nmi"] = nmi(features, labels)
    return metrics


def tensorboard_dir(checkpoint: str | Path) -> Path:
    """Where :func:`fit` writes the TensorBoard event files of a run: the folder ``<stem>.tensorboard``
    beside its ``checkpoint`` (``tensorboard --logdir`` that folder)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".tensorboard")


def best_path(checkpoint: str | Path) -> Path:
    """Where :func:`fit` keeps the weights of the best validation mAP so far, beside ``checkpoint``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".best.pt")


def fit(
    net: ConvNet,
    train_set: TensorDataset,
    loss_fn: LossFn,
    *,
    loss_name: str,
    dataset_name: str = "MNIST",
    epochs: int = 100,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int = 100,
    schedule: str = "constant",
    samples_per_class: int | None = None,
    augment: str = "none",
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    val_set: TensorDataset | None = None,
    select: str = "last",
    precision: str = "fp32",
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train ``net`` for ``epochs`` epochs of SGD; ``loss_fn(net, images, labels)`` gives a batch's loss.

    Batches of ``batch_size`` are drawn without replacement (seeded by ``seed`` and the epoch), or,
    with ``samples_per_class`` K, are class-balanced: ``batch_size // K`` classes x K images
    (:class:`BalancedLoader`). The learning rate of each epoch follows ``schedule`` (:data:`SCHEDULES`);
    each batch is augmented as ``augment`` says (:data:`AUGMENTATIONS`), seeded by ``seed`` and the epoch.
    A loss with several terms may return ``(loss, {name: 0-d tensor})``: each term's mean over the
    epoch's batches goes into the history as ``"term/<name>"``. A ``loss_fn`` with a method
    ``start_epoch(epoch)`` is told each epoch (1-based) before its first batch, also after a resume
    (losses that change with the epoch, such as two training phases).
    After every epoch it prints the epoch's total loss and saves ``net``, the optimizer and the
    history to ``checkpoint``; when ``checkpoint`` exists it resumes from the epoch stored there.
    Returns the history: "loss" (mean over batches), "loss_total" (sum), "epoch_s" (seconds per
    epoch), "lr" (learning rate of each epoch), and with ``val_set`` the metrics of
    :func:`validation_metrics` ("val_map", "val_recall_at_1" ... "val_recall_at_8", "val_p_at_1",
    "val_nmi") and, for a :class:`ConvNet`, "val_accuracy" (of its class scores): each a list of one
    float per epoch. With ``checkpoint``, every value of an epoch is also written as a TensorBoard
    scalar of that name, step = epoch, into :func:`tensorboard_dir` (a resumed run first drops the
    steps after the resumed epoch). ``select="val_map"`` ends with the weights of the epoch of best
    validation mAP (kept in :func:`best_path` of ``checkpoint``) instead of the last epoch's.
    ``precision="bf16"`` runs the network's forward pass in bfloat16 (:func:`autocast_net`):
    faster per epoch on a CPU with AVX-512 BF16 (by how much: benchmarks/README.md); on hardware
    without bfloat16 arithmetic it is refused with a ValueError saying why (:func:`check_precision`).
    """
    check_choice("augmentation", augment, AUGMENTATIONS)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if select not in ("last", "val_map"):
        raise ValueError(f"select must be 'last' or 'val_map', got {select!r}")
    if select == "val_map" and (val_set is None or checkpoint is None):
        raise ValueError("select='val_map' needs a val_set and a checkpoint path")
    if val_set is not None and len(val_set) <= max(VAL_KS):
        raise ValueError(f"val_set must hold more than {max(VAL_KS)} images (Recall@{max(VAL_KS)} looks among "
                         f"the {max(VAL_KS)} nearest others of each), got {len(val_set)}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    check_precision(precision, device)
    # conv weights and activations in NHWC order: faster steps of this ConvNet (benchmarks/training.py)
    net.to(device=device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    lrs = [scheduled_lr(lr, schedule, epoch, epochs) for epoch in range(1, epochs + 1)]
    history: dict[str, list[float]] = {"loss": [], "loss_total": [], "epoch_s": [], "lr": []}
    done = 0
    if checkpoint is not None and Path(checkpoint).exists():
        _, record = load_checkpoint(checkpoint, net, device=device)
        if record.get("loss") != loss_name:
            raise ValueError(f"{checkpoint} was trained with {record.get('loss')!r}, not {loss_name!r}")
        if record.get("optimizer"):
            optimizer.load_state_dict(record["optimizer"])
        history.update(record.get("history", {}))
        done = int(record.get("epochs", 0))
        if done > epochs:
            raise ValueError(f"{checkpoint} holds {done} epochs, more than the {epochs} asked for: ask for at "
                             f"least {done}, or remove it to start again")
        print(f"resuming from {checkpoint} after epoch {done}")
    if samples_per_class is None:
        loader = DeviceLoader.from_dataset(train_set, batch_size=batch_size, device=device, seed=seed)
    else:
        if batch_size % samples_per_class:
            raise ValueError(f"batch_size {batch_size} is not a multiple of samples_per_class {samples_per_class}")
        loader = BalancedLoader(*train_set.tensors, batch_size // samples_per_class, samples_per_class,
                                device=device, seed=seed)
    loader.set_epoch(done)
    writer = None
    if checkpoint is not None:
        from torch.utils.tensorboard import SummaryWriter  # imports the tensorboard package: only when logging

        writer = SummaryWriter(tensorboard_dir(checkpoint), purge_step=done + 1)
    net.train()
    for epoch in range(done + 1, epochs + 1):
        started = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lrs[epoch - 1]
        total, terms = torch.zeros((), device=device), {}
        coins = torch.Generator().manual_seed(seed + epoch)
        if hasattr(loss_fn, "start_epoch"):
            loss_fn.start_epoch(epoch)
        with autocast_net(net, precision, device.type):
            for images, labels in tqdm(loader, desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False):
                loss = loss_fn(net, augment_batch(images, augment, coins), labels)
                if isinstance(loss, tuple):
                    loss, parts = loss
                    for name, value in parts.items():
                        terms[name] = terms.get(name, 0) + value.detach()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach()
        scalars = {f"term/{name}": float(value) / len(loader) for name, value in terms.items()}
        scalars.update(loss_total=total.item(), loss=total.item() / len(loader),
                       epoch_s=time.perf_counter() - started, lr=optimizer.param_groups[0]["lr"])
        message = f"epoch {epoch}/{epochs}: total {loss_name} loss {total.item():.4f}"
        if val_set is not None:
            if isinstance(net, ConvNet):
                scalars["val_accuracy"] = accuracy(net, val_set)
                message += f", validation accuracy {scalars['val_accuracy']:.4f}"
            scalars.update(validation_metrics(net, val_set))
            message += (f", mAP {scalars['val_map']:.4f}, R@1 {scalars['val_recall_at_1']:.4f}, "
                        f"NMI {scalars['val_nmi']:.4f}")
        for name, value in scalars.items():
            history.setdefault(name, []).append(value)
            if writer is not None:
                writer.add_scalar(name, value, epoch)
        if writer is not None:
            writer.flush()
        print(message, flush=True)
        if select == "val_map" and history["val_map"][-1] >= max(history["val_map"]):
            save_checkpoint(best_path(checkpoint), net, dataset=dataset_name, loss=loss_name, seed=seed,
                            epochs=epoch, history=history)
        if checkpoint is not None:
            save_checkpoint(checkpoint, net, dataset=dataset_name, loss=loss_name, seed=seed,
                            epochs=epoch, history=history, optimizer=optimizer)
    if writer is not None:
        writer.close()
    if select == "val_map":
        load_checkpoint(best_path(checkpoint), net, device=device)
    # back to the default layout: measured as a loaded checkpoint is (channels-last weights round
    # differently, enough to swap a near-tied neighbour between a card and its re-measurement)
    net.to(memory_format=torch.contiguous_format)
    net.eval()
    return history
