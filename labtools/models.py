"""The lab's ConvNet, batched feature extraction, and checkpoints that say what they hold.

A checkpoint is a plain dict saved with :func:`torch.save` and readable with
``torch.load(path, weights_only=True)``::

    {"format": "metric-lab-checkpoint", "version": 1,
     "architecture": "ConvNet", "config": {"num_classes": 10},  # the constructor's arguments
     "state_dict": {...}, "dataset": "MNIST", "loss": "triplet", "seed": 0, "epochs": 100,
     "history": {"loss": [...], ...}, "scores": {...}, "optimizer": {...} or None}
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from labtools.validate import check_positive_int

__all__ = [
    "ConvNet",
    "EmbeddingNet",
    "CheckpointError",
    "CheckpointTooLarge",
    "extract_features",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "FEATURE_DIM",
]

CHECKPOINT_FORMAT = "metric-lab-checkpoint"
CHECKPOINT_VERSION = 1
#: Length of the embedding returned by :meth:`ConvNet.features`.
FEATURE_DIM = 256


class ConvNet(nn.Sequential):
    """The lab's small ConvNet: three conv blocks, 2x2 adaptive average pool, a linear layer.

    ``net(x)`` maps images ``[B, 1, 28, 28]`` to class scores ``[B, num_classes]``;
    ``net.features(x)`` returns the L2-normalized 256-d input of the last layer, ``[B, 256]``.
    """

    def __init__(self, num_classes: int = 10) -> None:
        layers = [
            nn.Conv2d(1, 32, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(32, 32, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(32, 64, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((2, 2)),
            nn.Flatten(),
            nn.Linear(64 * 2 * 2, num_classes),
        ]
        super().__init__(*layers)
        self.num_classes = num_classes

    @property
    def config(self) -> dict[str, Any]:
        """The constructor's arguments, stored in a checkpoint to rebuild the network."""
        return {"num_classes": int(self.num_classes)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x)
        return _run_layers(list(self), x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The unnormalized penultimate output, ``[B, 256]``."""
        _check_images(x)
        return _run_layers(list(self)[:-1], x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalized embedding of images ``[B, 1, 28, 28]``: ``[B, 256]`` with unit rows."""
        return nn.functional.normalize(self.embed(x), p=2, dim=1)


def _run_layers(layers: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Apply ``layers`` to ``x`` in order, each ReLU followed by a max pool computed after the pool.

    The two commute: a max of ReLUs is the ReLU of the max, and the gradients agree too (the
    pool's winner is the same, and a window with no positive value passes no gradient either
    way). Outputs and gradients are those of the layers in their order, while the ReLU and its
    backward pass touch a quarter of the values (benchmarks/training.py measures the gain).
    """
    i = 0
    while i < len(layers):
        if isinstance(layers[i], nn.ReLU) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.MaxPool2d):
            x = layers[i](layers[i + 1](x))
            i += 2
        else:
            x = layers[i](x)
            i += 1
    return x


class EmbeddingNet(nn.Module):
    """A :class:`ConvNet` backbone, a linear embedding layer, and the class vectors of the loss that trained it.

    ``net.features(x)`` maps images ``[B, 1, 28, 28]`` to unit rows ``[B, 256]``: the backbone's
    ``embed`` (its classification layer is left unused), layer-normalized without learned
    parameters when ``layer_norm``, through the linear layer ``embedding`` (256 -> 256, with bias:
    an image whose ReLU features are all zero still gets a direction), then L2-normalized.
    ``net.weight`` holds the learned class vectors of a proxy or classification loss:
    ``[C, 256]`` for ``sub_centers=1`` (NormSoftmax, ArcFace, ProxyNCA), ``[C, K, 256]`` for
    ``sub_centers=K > 1`` (Sub-center ArcFace), ``None`` for ``sub_centers=0`` (triplet losses).
    """

    def __init__(self, num_classes: int = 10, layer_norm: bool = False, sub_centers: int = 1) -> None:
        super().__init__()
        if isinstance(sub_centers, bool) or not isinstance(sub_centers, int) or sub_centers < 0:
            raise ValueError(f"sub_centers must be an integer >= 0, got {sub_centers!r}")
        self.backbone = ConvNet(num_classes)
        self.embedding = nn.Linear(FEATURE_DIM, FEATURE_DIM)
        self.num_classes, self.layer_norm, self.sub_centers = num_classes, bool(layer_norm), sub_centers
        shape = (num_classes, FEATURE_DIM) if sub_centers == 1 else (num_classes, sub_centers, FEATURE_DIM)
        self.weight = nn.Parameter(torch.randn(shape)) if sub_centers else None

    @property
    def config(self) -> dict[str, Any]:
        """The constructor's arguments, stored in a checkpoint to rebuild the network."""
        return {"num_classes": int(self.num_classes), "layer_norm": self.layer_norm, "sub_centers": self.sub_centers}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalized embedding of images ``[B, 1, 28, 28]``: ``[B, 256]`` with unit rows."""
        x = self.backbone.embed(x)
        if self.layer_norm:
            x = nn.functional.layer_norm(x, x.shape[-1:])
        return nn.functional.normalize(self.embedding(x), p=2, dim=1)


def architectures() -> dict[str, type[nn.Module]]:
    """The networks a checkpoint can hold, by the name stored in its ``architecture`` field."""
    from labtools.dvml import DVML  # imports this module

    return {"ConvNet": ConvNet, "EmbeddingNet": EmbeddingNet, "DVML": DVML}


def _a(name: str) -> str:
    return f"{'an' if name[:1] in 'AEIOU' else 'a'} {name}"


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"ConvNet expects a torch.Tensor of images, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"ConvNet expects images of shape [B, 1, H, W], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"ConvNet expects floating-point images, got dtype {x.dtype}")


@torch.no_grad()
def extract_features(
    net: nn.Module,
    images: torch.Tensor,
    batch_size: int = 1000,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """``net.features`` of ``images [N, 1, 28, 28]`` in batches, in eval mode: ``[N, D]`` on the CPU.

    ``device`` defaults to the device of the network's parameters. The network's training flag is
    restored afterwards.
    """
    check_positive_int(batch_size, "batch_size")
    device = torch.device(device) if device is not None else next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        chunks = [
            net.features(images[start : start + batch_size].to(device)).cpu()
            for start in tqdm(
                range(0, len(images), batch_size), desc="features", disable=not progress, leave=False
            )
        ]
    finally:
        net.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, FEATURE_DIM)


class CheckpointError(ValueError):
    """A file is not a checkpoint of the network it is loaded into."""


class CheckpointTooLarge(CheckpointError):
    """The file, or what its zip members unpack to, is larger than the reader allows."""


def save_checkpoint(
    path: str | os.PathLike,
    net: nn.Module,
    *,
    dataset: str,
    loss: str,
    seed: int | None = None,
    epochs: int = 0,
    history: dict[str, list[float]] | None = None,
    scores: dict[str, float] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Save ``net`` (one of :func:`architectures`) with what it was trained on and how;
    ``optimizer`` makes training resumable.

    The file is written to a temporary name and renamed, so an interrupted save never leaves a
    truncated checkpoint behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "architecture": type(net).__name__,
        "config": net.config,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "dataset": dataset,
        "loss": loss,
        "seed": seed,
        "epochs": int(epochs),
        "history": {k: [float(v) for v in values] for k, values in (history or {}).items()},
        "scores": {k: float(v) for k, v in (scores or {}).items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
    }
    temporary = path.with_name(path.name + ".tmp")
    torch.save(record, temporary)
    os.replace(temporary, path)
    return path


def read_checkpoint(path: str | os.PathLike, max_bytes: int | None = None) -> dict[str, Any]:
    """Read a checkpoint file safely (``weights_only=True``) and check it is one of ours.

    A bare state dict (as the original lab shipped) is wrapped into a record with unknown metadata.
    ``max_bytes``: refuse (CheckpointTooLarge) a file larger than that, or one whose zip members unpack
    to more (torch inflates a compressed member: a file of a few kB can fill the memory).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    if max_bytes is not None:
        size = path.stat().st_size
        if size <= max_bytes and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                size = max(size, sum(member.file_size for member in archive.infolist()))
        if size > max_bytes:
            raise CheckpointTooLarge(f"{path.name} holds {size / 2 ** 20:.0f} MB, more than the "
                                  f"{max_bytes / 2 ** 20:.0f} MB a checkpoint may")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {error}") from error
    if isinstance(record, dict) and record.get("format") == CHECKPOINT_FORMAT:
        return record
    if isinstance(record, dict) and record and all(isinstance(v, torch.Tensor) for v in record.values()):
        return {"format": CHECKPOINT_FORMAT, "architecture": None, "state_dict": record, "history": {}, "scores": {}}
    raise CheckpointError(f"{path} is not a metric-lab checkpoint (found a {type(record).__name__})")


def load_checkpoint(
    path: str | os.PathLike, net: nn.Module | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint into ``net`` (if ``None``, a new network of the stored architecture and
    config: a :class:`ConvNet`, an :class:`EmbeddingNet` or a :class:`~labtools.dvml.DVML`).

    Returns ``(net, record)``, the network in eval mode on ``device`` and the checkpoint's record
    (dataset, loss, seed, epochs, history, scores, optimizer state). Raises
    :class:`CheckpointError` saying what differs when the file holds another architecture.
    """
    record = read_checkpoint(path)
    state = record["state_dict"]
    stored = record.get("architecture")
    if net is None and stored not in (None, "ConvNet"):
        known = architectures()
        if stored not in known:
            raise CheckpointError(f"{path} holds {_a(stored)}, which is none of {', '.join(known)}")
        try:
            net = known[stored](**record.get("config", {}))
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{path} holds {_a(stored)} of an unknown configuration: {error}") from error
    elif net is None:
        num_classes = record.get("config", {}).get("num_classes")
        if num_classes is None and "10.weight" in state:
            num_classes = state["10.weight"].shape[0]
        net = ConvNet(num_classes=num_classes or 10)
    if stored is not None and stored != type(net).__name__:
        raise CheckpointError(f"{path} holds {_a(stored)}, not {_a(type(net).__name__)}")
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs network {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing parameters {missing}")
        if unexpected:
            problems.append(f"unexpected parameters {unexpected}")
        if mismatched:
            problems.append("shape mismatches " + "; ".join(mismatched))
        raise CheckpointError(f"{path} does not fit {type(net).__name__}: " + ", ".join(problems))
    net.load_state_dict(state)
    return net.to(device).eval(), record
