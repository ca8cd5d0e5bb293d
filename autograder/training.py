"""The one training loop of the instructor side: SGD over shuffled batches, checkpoint each epoch.

Every reference checkpoint and the reference ``train_triplets`` go through :func:`fit`; the loss
is the only thing that differs between runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from labtools.data import DeviceLoader
from labtools.models import ConvNet, load_checkpoint, save_checkpoint

LossFn = Callable[[ConvNet, torch.Tensor, torch.Tensor], torch.Tensor]


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
    batch_size: int = 100,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    val_set: TensorDataset | None = None,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train ``net`` for ``epochs`` epochs of SGD; ``loss_fn(net, images, labels)`` gives a batch's loss.

    Batches of ``batch_size`` are drawn without replacement (seeded by ``seed`` and the epoch).
    After every epoch it prints the epoch's total loss and saves ``net``, the optimizer and the
    history to ``checkpoint``; when ``checkpoint`` exists it resumes from the epoch stored there.
    Returns the history: "loss" (mean over batches), "loss_total" (sum), "epoch_s" (seconds per
    epoch), and "val_accuracy" when ``val_set`` is given.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    history: dict[str, list[float]] = {"loss": [], "loss_total": [], "epoch_s": []}
    if val_set is not None:
        history["val_accuracy"] = []
    done = 0
    if checkpoint is not None and Path(checkpoint).exists():
        _, record = load_checkpoint(checkpoint, net, device=device)
        if record.get("loss") != loss_name:
            raise ValueError(f"{checkpoint} was trained with {record.get('loss')!r}, not {loss_name!r}")
        if record.get("optimizer"):
            optimizer.load_state_dict(record["optimizer"])
        history.update(record.get("history", {}))
        done = int(record.get("epochs", 0))
        print(f"resuming from {checkpoint} after epoch {done}")
    loader = DeviceLoader.from_dataset(train_set, batch_size=batch_size, device=device, seed=seed)
    loader.set_epoch(done)
    net.train()
    for epoch in range(done + 1, epochs + 1):
        started = time.perf_counter()
        total = torch.zeros((), device=device)
        for images, labels in tqdm(loader, desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False):
            loss = loss_fn(net, images, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
        history["loss_total"].append(total.item())
        history["loss"].append(total.item() / len(loader))
        history["epoch_s"].append(time.perf_counter() - started)
        message = f"epoch {epoch}/{epochs}: total {loss_name} loss {total.item():.4f}"
        if val_set is not None:
            history["val_accuracy"].append(accuracy(net, val_set))
            message += f", validation accuracy {history['val_accuracy'][-1]:.4f}"
        print(message, flush=True)
        if checkpoint is not None:
            save_checkpoint(checkpoint, net, dataset=dataset_name, loss=loss_name, seed=seed,
                            epochs=epoch, history=history, optimizer=optimizer)
    net.eval()
    return history
