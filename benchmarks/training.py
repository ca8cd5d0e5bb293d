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
follows it (the same numbers); the row "layers in order" shows what that adds: the kit's float32
path with the ReLUs before the pools.

The pipelines take turns, one epoch each, so that a machine that slows down or speeds up during
the run (a shared host) weighs on all of them alike; each kit pipeline trains on the same batches.
Prints the median seconds per epoch of each (and every epoch's with ``--epochs`` > 1), and of the
kit's loader with the network in the default memory format (what channels-last adds), the ratios
(textbook / kit), and the mAP of each trained network on
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
import statistics
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


def trainer(loader, device, memory_format=torch.contiguous_format, precision="fp32", commute=True):
    """A fresh ConvNet (seed 0) with its SGD optimizer, and a function that trains it for one pass
    over ``loader`` and returns the seconds it took; ``commute=False`` runs its layers in their order
    (ReLU, then max pool). Returns (net, train_one_epoch)."""
    torch.manual_seed(0)
    net = ConvNet().to(device=device, memory_format=memory_format).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def train_one_epoch() -> float:
        in_order = contextlib.nullcontext() if commute else mock.patch.object(models, "_run_layers", layers_in_order)
        with autocast_net(net, precision, device.type), in_order:
            started = time.perf_counter()
            for images, labels in loader:
                loss = triplet_loss(net.features(images.to(device)), labels.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            loss.item()  # waits for the device
            return time.perf_counter() - started

    return net, train_one_epoch


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
    for warm_up in (trainer([(images[:100], labels[:100])] * 3, device),  # first passes, allocator: untimed
                    trainer([(images[:100], labels[:100])] * 3, device, torch.channels_last, "bf16")):
        warm_up[1]()
    pipelines = {  # name: (loader, memory format, precision, commuted pools, set-up seconds)
        "textbook: torchvision MNIST + ToTensor + DataLoader": (textbook, torch.contiguous_format, "fp32", True,
                                                                textbook_setup),
        "DeviceLoader (data on the device), default memory format": (kit, torch.contiguous_format, "fp32", True,
                                                                     kit_setup),
        "kit: DeviceLoader, channels-last net (autograder.training.fit)": (kit, torch.channels_last, "fp32", True,
                                                                           kit_setup),
        "kit, bf16: the same, forward pass in bfloat16 (fit(precision='bf16'))": (kit, torch.channels_last, "bf16",
                                                                                 True, kit_setup),
        "kit, layers in order (ReLU before max pool)": (kit, torch.channels_last, "fp32", False, kit_setup),
    }
    trainers = {name: trainer(loader, device, memory_format, precision, commute)
                for name, (loader, memory_format, precision, commute, _) in pipelines.items()}
    epoch_s = {name: [] for name in pipelines}
    for epoch in range(epochs):  # the pipelines take turns, one epoch each
        for name, (_, train_one_epoch) in trainers.items():
            kit.set_epoch(epoch)  # every kit pipeline trains on the same batches
            epoch_s[name].append(train_one_epoch())
    seconds = {name: statistics.median(values) for name, values in epoch_s.items()}
    maps = {name: fixed_set_map(net) for name, (net, _) in trainers.items()}
    print(f"  {'pipeline':72}{'s/epoch':>9}{'set-up s':>10}{'mAP':>8}")
    for name, (*_, setup) in pipelines.items():
        print(f"  {name:72}{seconds[name]:9.2f}{setup:10.2f}{maps[name]:8.4f}")
    if epochs > 1:
        print("seconds of each epoch, in turn:")
        for name, values in epoch_s.items():
            print(f"  {name[:60]:60}" + "".join(f"{value:8.2f}" for value in values))
    textbook_s, plain_s, kit_s, bf16_s, in_order_s = seconds.values()
    print(f"ratio (textbook / kit) per epoch: {textbook_s / kit_s:.2f}x, with bf16 {textbook_s / bf16_s:.2f}x "
          f"(data on the device alone: {textbook_s / plain_s:.2f}x; the kit with the layers in order "
          f"{textbook_s / in_order_s:.2f}x)")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
