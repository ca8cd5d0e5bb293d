"""What the benchmark scripts share on their command lines."""

import argparse
import contextlib
import shutil
import tempfile
from pathlib import Path


def positive_int(text: str) -> int:
    """argparse type of a count (sizes, epochs, threads, jobs): an integer >= 1, refused by name otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def available_device(text: str) -> str:
    """argparse type of ``--device``: a device that torch knows and this machine has (cuda on a GPU host)."""
    import torch

    try:
        torch.empty(0, device=text)
    except (RuntimeError, AssertionError) as error:  # AssertionError: a torch built without CUDA
        raise argparse.ArgumentTypeError(f"{text!r} cannot be used here: {str(error).splitlines()[0]}") from None
    return text


@contextlib.contextmanager
def work_folder(keep: str | None, prefix: str):
    """The folder a benchmark builds its class in: ``keep`` (``--keep``, left in place) or a
    temporary folder removed afterwards, whatever happens."""
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
