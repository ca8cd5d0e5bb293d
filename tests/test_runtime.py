"""labtools.runtime: the allocator settings for training on the CPU."""

import os
import subprocess
import sys

import pytest

from autograder.paths import REPO
from labtools import runtime


#: Minor page faults per training step of the ConvNet (batch 100) in a fresh process; prints the
#: faults per step. ``default``: glibc as it starts, which raises its thresholds as large blocks
#: are freed, so the count varies from run to run (from a few to thousands, with the heap's layout);
#: ``returning``: glibc's start-up thresholds (128 KiB) held fixed, so large blocks always go back
#: to the OS; ``retain``: the same, then :func:`labtools.runtime.retain_freed_memory`.
FAULTS_PER_STEP = """
import ctypes, resource, sys, torch
from labtools import runtime
from labtools.models import ConvNet
if sys.argv[1] in ("returning", "retain"):
    mallopt = ctypes.CDLL(None).mallopt
    assert mallopt(runtime._M_MMAP_THRESHOLD, 128 << 10) and mallopt(runtime._M_TRIM_THRESHOLD, 128 << 10)
if sys.argv[1] == "retain":
    assert runtime.retain_freed_memory()
torch.manual_seed(0)
net = ConvNet().to(memory_format=torch.channels_last)
x = torch.rand(100, 1, 28, 28)
def step():
    net.features(x).sum().backward()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def faults_per_step(mode: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP, mode], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return float(run.stdout.split()[-1])


@pytest.mark.skipif(not runtime._on_glibc(), reason="glibc only")
def test_retained_memory_spares_a_training_step_its_page_faults():
    returning, retained = faults_per_step("returning"), faults_per_step("retain")
    assert returning > 200, f"glibc returning large blocks no longer page-faults a step ({returning:.0f} per step)"
    assert retained < returning / 20, (returning, retained)


def test_retain_freed_memory_does_nothing_off_glibc(monkeypatch):
    monkeypatch.setattr(runtime.platform, "libc_ver", lambda: ("", ""))
    assert runtime.retain_freed_memory.__wrapped__() is False


def test_retain_freed_memory_does_nothing_where_the_c_library_is_forbidden(monkeypatch):
    def forbidden(name):
        raise PermissionError("ctypes.dlopen is not allowed while checking")

    monkeypatch.setattr(runtime.ctypes, "CDLL", forbidden)
    assert runtime.retain_freed_memory.__wrapped__() is False
