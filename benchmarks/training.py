"""Seconds per epoch of triplet training on MNIST: the textbook torchvision pipeline vs the kit's path.

    python benchmarks/training.py [--epochs 1] [--limit N] [--device cuda] [--threads T] [--smoke]

Both train the lab's ConvNet from the same initial weights with SGD (lr 0.01, momentum 0.9) on
batches of 100, the loss being ``autograder.labs.lab2_triplet.reference.triplet_loss`` of ``net.features(x)``:

* textbook: ``torchvision.datasets.MNIST`` with ``transforms.ToTensor()`` through a
  ``torch.utils.data.DataLoader`` (shuffle=True, batch 100, no workers), each batch moved to the device;
* kit: ``labtools.data.DeviceLoader``, the whole training set put on the device once, and the
  network in the channels-last memory format, as ``autograder.training.fit`` does; a loader on
  the CPU makes the process keep the memory it frees (``labtools.runtime.retain_freed_memory``);
* kit, bf16: the same with the network's forward pass in bfloat16, as ``fit(precision="bf16")``
  does (``autograder.training.autocast_net``; weights, optimizer and loss in float32).

Every pipeline runs ``ConvNet`` as ``labtools.models`` does, each ReLU after the max pool that
follows it (the same numbers). Two rows show what a part of the kit adds, each the float32 kit
without it: "layers in order" (the ReLUs before the pools) and "freed memory returned to the OS"
(glibc's default settings).

Each pipeline runs in a process of its own (spawned), so that one's allocator settings, threads
and caches are not another's: the textbook's process is a plain one. The pipelines take turns, one
epoch each, so that a machine that slows down or speeds up during the run (a shared host) weighs
on all of them alike; each kit pipeline trains on the same batches.
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
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository on the path

from autograder.labs.lab2_triplet.reference import triplet_loss  # noqa: E402
from autograder.training import autocast_net, validation_map  # noqa: E402
from benchmarks.cli import available_device, positive_int  # noqa: E402
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


class Pipeline(NamedTuple):
    """How one row of the table trains: its loader, the network's memory format and precision,
    whether the ConvNet commutes its pools, and whether the process keeps the memory it frees."""

    loader: str  # "textbook" or "kit" (labtools.data.DeviceLoader)
    memory_format: torch.memory_format = torch.channels_last
    precision: str = "fp32"
    commute: bool = True
    retain_memory: bool = True


PIPELINES = {
    "textbook: torchvision MNIST + ToTensor + DataLoader": Pipeline("textbook", torch.contiguous_format),
    "DeviceLoader (data on the device), default memory format": Pipeline("kit", torch.contiguous_format),
    "kit: DeviceLoader, channels-last net (autograder.training.fit)": Pipeline("kit"),
    "kit, bf16: the same, forward pass in bfloat16 (fit(precision='bf16'))": Pipeline("kit", precision="bf16"),
    "kit, layers in order (ReLU before max pool)": Pipeline("kit", commute=False),
    "kit, freed memory returned to the OS (glibc's default)": Pipeline("kit", retain_memory=False),
}


def serve(connection, pipeline: Pipeline, limit: int | None, device: str, threads: int | None) -> None:
    """Run in a process of its own: set up ``pipeline``, say its set-up seconds, then train one epoch
    for each epoch number received (answering its seconds) and answer the mAP when sent ``None``."""
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device)
    keep_default_allocator = contextlib.nullcontext() if pipeline.retain_memory else \
        mock.patch.object(data, "retain_freed_memory", lambda: False)
    with keep_default_allocator:
        started = time.perf_counter()
        if pipeline.loader == "textbook":
            loader = textbook_loader(limit)
        else:
            images, labels = data.load_images("MNIST", train=True, download=False)
            loader = data.DeviceLoader(images[:limit], labels[:limit], batch_size=100, shuffle=True, device=device)
        setup = time.perf_counter() - started
        how = {"memory_format": pipeline.memory_format, "precision": pipeline.precision, "commute": pipeline.commute}
        trainer([next(iter(loader))] * 3, device, **how)[1]()  # first passes, allocator: untimed
        net, train_one_epoch = trainer(loader, device, **how)
    connection.send(setup)
    while (epoch := connection.recv()) is not None:
        if isinstance(loader, data.DeviceLoader):
            loader.set_epoch(epoch)  # every kit pipeline trains on the same batches
        connection.send(train_one_epoch())
    connection.send(fixed_set_map(net))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=positive_int, default=1, help="epochs of each pipeline (default 1)")
    parser.add_argument("--limit", type=positive_int, default=None, help="train on the first N images only")
    parser.add_argument("--device", type=available_device, default="cpu", help="device to train on (default cpu)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default torch's)")
    parser.add_argument("--smoke", action="store_true", help="--limit 500 --epochs 1: a quick check that it runs")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    epochs, limit = (1, 500) if args.smoke else (args.epochs, args.limit)
    _, labels = data.load_images("MNIST", train=True, download=False)  # stages the raw files for the textbook

    spawn = multiprocessing.get_context("spawn")
    connections, setup = {}, {}
    for name, pipeline in PIPELINES.items():  # one at a time, so that each set-up runs alone
        connections[name], theirs = spawn.Pipe()
        spawn.Process(target=serve, args=(theirs, pipeline, limit, args.device, args.threads), daemon=True).start()
        theirs.close()  # the child holds it now: if the child dies, recv raises EOFError instead of waiting
        setup[name] = connections[name].recv()
    print(f"device {args.device}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}, one process per pipeline")
    print(f"MNIST training images: {len(labels[:limit])}, batches of 100, {epochs} epoch(s) each")
    epoch_s = {name: [] for name in PIPELINES}
    for epoch in range(epochs):  # the pipelines take turns, one epoch each
        for name, connection in connections.items():
            connection.send(epoch)
            epoch_s[name].append(connection.recv())
    maps = {}
    for name, connection in connections.items():
        connection.send(None)
        maps[name] = connection.recv()
    seconds = {name: statistics.median(values) for name, values in epoch_s.items()}
    print(f"  {'pipeline':72}{'s/epoch':>9}{'set-up s':>10}{'mAP':>8}")
    for name in PIPELINES:
        print(f"  {name:72}{seconds[name]:9.2f}{setup[name]:10.2f}{maps[name]:8.4f}")
    if epochs > 1:
        print("seconds of each epoch, in turn:")
        for name, values in epoch_s.items():
            print(f"  {name[:60]:60}" + "".join(f"{value:8.2f}" for value in values))
    textbook_s, plain_s, kit_s, bf16_s, in_order_s, returned_s = seconds.values()
    print(f"ratio (textbook / kit) per epoch: {textbook_s / kit_s:.2f}x, with bf16 {textbook_s / bf16_s:.2f}x "
          f"(data on the device alone: {textbook_s / plain_s:.2f}x; the kit with the layers in order "
          f"{textbook_s / in_order_s:.2f}x, with freed memory returned to the OS {textbook_s / returned_s:.2f}x)")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
