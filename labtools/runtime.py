"""Where and how fast the labs run: the device, and the fast configuration for grading and CI.

The fast configuration is on when the notebook runs under the autograder (nbgrader sets
``NBGRADER_EXECUTION``) or when ``LABTOOLS_FAST=1``: long cells then run a short, real
configuration (a few hundred images, one or two epochs) instead of the full schedule.
"""

import os

import torch

__all__ = ["fast_mode", "pick_device"]


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
