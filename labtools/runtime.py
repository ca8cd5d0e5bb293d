"""Where and how fast the labs run: the device, the fast configuration for grading and CI, and
the C allocator's settings for training on the CPU.

The fast configuration is on when the notebook runs under the autograder (nbgrader sets
``NBGRADER_EXECUTION``) or when ``LABTOOLS_FAST=1``: long cells then run a short, real
configuration (a few hundred images, one or two epochs) instead of the full schedule.
"""

import ctypes
import functools
import os
import platform
import sys

import torch

__all__ = ["fast_mode", "pick_device", "retain_freed_memory"]

# glibc's mallopt parameters (malloc.h) and the values retain_freed_memory sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Freed memory at the top of the heap that glibc keeps instead of returning it to the OS.
TRIM_THRESHOLD = 256 << 20
#: Blocks below this size come from the heap, not from their own mmap (glibc's maximum on 64 bits).
MMAP_THRESHOLD = 32 << 20


def fast_mode() -> bool:
    """True under the autograder or with ``LABTOOLS_FAST`` set to a non-empty value other than 0."""
    if os.environ.get("NBGRADER_EXECUTION"):
        return True
    return os.environ.get("LABTOOLS_FAST", "") not in ("", "0")


def pick_device(prefer: str | None = None) -> torch.device:
    """``prefer`` if given, else CUDA when available, else Apple's MPS when available, else the CPU."""
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _on_glibc() -> bool:
    """True on Linux with the GNU C library, whose malloc :func:`retain_freed_memory` tunes."""
    return sys.platform == "linux" and platform.libc_ver()[0] == "glibc"


@functools.cache
def retain_freed_memory() -> bool:
    """Let the process keep the memory it frees, so a CPU training step does not page-fault its buffers afresh.

    Each step on the CPU allocates and frees the same activations and gradients (several MB each
    for a batch of 100 through the ConvNet). glibc's malloc serves blocks that large with their own
    ``mmap``, or returns them to the OS when they sit at the top of the heap, so the next step
    touches fresh pages again: thousands of page faults per step (``tests/test_runtime.py`` counts
    them), which made an epoch of the float32 ConvNet slower (measured by ``benchmarks/training.py``,
    figures in ``benchmarks/README.md``).
    This sets glibc's ``M_MMAP_THRESHOLD`` to :data:`MMAP_THRESHOLD` and ``M_TRIM_THRESHOLD`` to
    :data:`TRIM_THRESHOLD` (what ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` set
    at start-up), which also ends glibc's own adjustment of the two. Process-wide and done once;
    :class:`labtools.data.DeviceLoader` calls it for data on the CPU. Returns whether the
    settings took effect: ``False`` off glibc (macOS, Windows, musl), where it does nothing, and
    where the C library cannot be opened (the checks' sandbox forbids ``ctypes``; its worker calls
    this before it closes the door).
    """
    if not _on_glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except OSError:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
