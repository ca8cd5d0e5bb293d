"""Seconds per epoch of triplet training on MNIST: the textbook torchvision pipeline vs the kit's path.

    python benchmarks/training.py [--epochs 1] [--limit N] [--device cuda] [--threads T] [--smoke]

Both train the lab's ConvNet from the same initial weights with SGD (lr 0.01, momentum 0.9) on
batches of 100, the loss being ``autograder.reference.lab2.triplet_loss`` of ``net.features(x)``:

* textbook: ``torchvision.datasets.MNIST`` with ``transforms.ToTensor()`` through a
  ``torch.utils.data.DataLoader`` (shuffle=True, batch 100, no workers), each batch moved to the device;
* kit: ``labtools.data.DeviceLoader``, the whole training set put on the device once, and the
  network in the channels-last memory format, as ``autograder.training.fit`` does;
* kit, bf16: the same with the network's forward pass in bfloat16, as ``fit(precision="bf16")``
  does (``autograder.training.autocast_net``; weights, optimizer and loss in float32).

Every pipeline runs ``ConvNet`` as ``labtools.models`` does, each ReLU after the max pool that
follows it (the same numbers); the row "layers in order" shows what that adds, the kit's bf16
path with the ReLUs before the pools.

Prints seconds per epoch of each, and of the kit's loader with the network in the default memory
format (what channels-last adds), the ratios (textbook / kit), and the mAP of each trained network on
the 1,000 images of MNIST's fixed test set (each query ranked against the other 999), so that a faster
path shows it learns as well. The one-time set-up (reading the files) is printed apart. ``--limit N``
trains on the first N images; ``--smoke`` is ``--limit 500 --epochs 1``. Needs MNIST under
``LABTOOLS_DATA``; writes nothing but the staged copy of the raw files that ``labtools.data`` keeps
in its cache.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from unittest import mock

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autograder.reference.lab2 import triplet_loss  # noqa: E402
from autograder.training import autocast_net, validation_map  # noqa: E402
from labtools import data, models  # noqa: E402
from labtools.models import ConvNet  # noqa: E402


def layers_in_order(layers, x):
    """``labtools.models._run_layers`` without its commuted pools: each layer in its order."""
    for layer in layers:
        x = layer(x)
    return x


def train(loader, device, epochs: int, memory_format=torch.contiguous_format, precision="fp32", commute=True):
    """Train a fresh ConvNet (seed 0) for ``epochs`` passes over ``loader``; ``commute=False`` runs
    its layers in their order (ReLU, then max pool). Returns (the trained net, seconds of each epoch)."""
    torch.manual_seed(0)
    net = ConvNet().to(device=device, memory_format=memory_format).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    seconds = []
    in_order = contextlib.nullcontext() if commute else mock.patch.object(models, "_run_layers", layers_in_order)
    with autocast_net(net, precision, device.type), in_order:
        for _ in range(epochs):
            started = time.perf_counter()
            for images, labels in loader:
                loss = triplet_loss(net.features(images.to(device)), labels.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            loss.item()  # waits for the device
            seconds.append(time.perf_counter() - started)
    return net, seconds


def fixed_set_map(net) -> float:
    """mAP of ``net``'s features over MNIST's fixed test set (1,000 queries, each against the other 999)."""
    return validation_map(net.to(memory_format=torch.contiguous_format), data.fixed_test_set("MNIST", download=False))


def textbook_loader(limit: int | None):
    """torchvision's MNIST (ToTensor) in a shuffled DataLoader of batches of 100, on the staged raw files."""
    from torchvision import datasets, transforms

    root = data._stage(data.resolve_data_root(), "MNIST")  # where load_images extracted the archives
    dataset = datasets.MNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
    if limit:
        dataset = torch.utils.data.Subset(dataset, range(limit))
    return torch.utils.data.DataLoader(dataset, batch_size=100, shuffle=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs of each pipeline (default 1)")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    parser.add_argument("--device", default="cpu", help="device to train on (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    parser.add_argument("--smoke", action="store_true", help="--limit 500 --epochs 1: a quick check that it runs")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    epochs, limit = (1, 500) if args.smoke else (args.epochs, args.limit)
    device = torch.device(args.device)

    started = time.perf_counter()
    images, labels = data.load_images("MNIST", train=True, download=False)  # also stages the raw files
    images, labels = images[:limit], labels[:limit]
    kit = data.DeviceLoader(images, labels, batch_size=100, shuffle=True, device=device)
    kit_setup = time.perf_counter() - started
    started = time.perf_counter()
    textbook = textbook_loader(limit)
    textbook_setup = time.perf_counter() - started

    print(f"device {device}, {os.cpu_count()} CPU cores, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"MNIST training images: {len(labels)}, batches of 100, {epochs} epoch(s) each")
    train([(images[:100], labels[:100])] * 3, device, 1)  # warm-up (first passes, allocator), untimed
    train([(images[:100], labels[:100])] * 3, device, 1, torch.channels_last, "bf16")
    pipelines = {  # name: (loader, memory format, precision, commuted pools, set-up seconds)
        "textbook: torchvision MNIST + ToTensor + DataLoader": (textbook, torch.contiguous_format, "fp32", True,
                                                                textbook_setup),
        "DeviceLoader (data on the device), default memory format": (kit, torch.contiguous_format, "fp32", True,
                                                                     kit_setup),
        "kit: DeviceLoader, channels-last net (autograder.training.fit)": (kit, torch.channels_last, "fp32", True,
                                                                           kit_setup),
        "kit, bf16: the same, forward pass in bfloat16 (fit(precision='bf16'))": (kit, torch.channels_last, "bf16",
                                                                                 True, kit_setup),
        "kit, bf16, layers in order (ReLU before max pool)": (kit, torch.channels_last, "bf16", False, kit_setup),
    }
    seconds, maps = {}, {}
    for name, (loader, memory_format, precision, commute, _) in pipelines.items():
        if loader is kit:
            kit.set_epoch(0)  # every kit pipeline trains on the same batches
        net, epoch_s = train(loader, device, epochs, memory_format, precision, commute)
        seconds[name], maps[name] = sum(epoch_s) / epochs, fixed_set_map(net)
    print(f"  {'pipeline':72}{'s/epoch':>9}{'set-up s':>10}{'mAP':>8}")
    for name, (*_, setup) in pipelines.items():
        print(f"  {name:72}{seconds[name]:9.2f}{setup:10.2f}{maps[name]:8.4f}")
    textbook_s, plain_s, kit_s, bf16_s, in_order_s = seconds.values()
    print(f"ratio (textbook / kit) per epoch: {textbook_s / kit_s:.2f}x, with bf16 {textbook_s / bf16_s:.2f}x "
          f"(data on the device alone: {textbook_s / plain_s:.2f}x; bf16 with the layers in order "
          f"{textbook_s / in_order_s:.2f}x)")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
