"""The benchmark scripts run end to end (``--smoke``: tiny sizes, every peer); no timing is asserted."""

import os
import subprocess
import sys

import pytest

from autograder.paths import REPO


def smoke(script, *args):
    """Run ``benchmarks/<script> --smoke *args``; return its stdout, failing with its output if it fails."""
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--smoke", *args], cwd=REPO,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def test_evaluator_smoke_on_synthetic_data():
    out = smoke("evaluator.py", "--data", "synthetic")
    assert "agreement: all methods agree to 1e-6" in out
    assert "N=500 synthetic" in out
    assert "ratios (peer / ours) at N=500: plain" in out and "sklearn" in out and "torchmetrics" in out and "pml" in out
    assert "peak RSS of ours" in out


def test_evaluator_smoke_on_mnist_features(require_mnist):
    out = smoke("evaluator.py", "--data", "mnist")
    assert "agreement: all methods agree to 1e-6" in out
    assert "N=500 MNIST classifier features" in out and "ratios (peer / ours) at N=500" in out


def test_training_smoke(require_mnist):
    out = smoke("training.py")
    assert "MNIST training images: 500" in out
    assert "ratio (textbook / kit) per epoch:" in out and ", with bf16 " in out
    rows = [line for line in out.splitlines() if line.startswith("  ") and "pipeline" not in line]
    assert len(rows) == 6 and "bf16" in rows[3] and "layers in order" in rows[4] and "returned to the OS" in rows[5]
    maps = [float(row.split()[-1]) for row in rows]  # each trained net's mAP
    assert all(0 < m <= 1 for m in maps)
    # the float32 kit on the same batches, each in a process of its own: the same numbers whether
    # its pools are commuted and whether the process keeps the memory it frees
    assert maps[4] == maps[2] and maps[5] == maps[2]


@pytest.mark.parametrize("script, argument", [
    ("evaluator.py", "--n"), ("evaluator.py", "--threads"), ("grading.py", "-n"), ("grading.py", "--jobs"),
    ("training.py", "--epochs"), ("training.py", "--limit"), ("training.py", "--threads"),
])
def test_counts_below_one_are_refused_by_name(script, argument):
    for value, words in (("0", "must be at least 1, got 0"), ("two", "'two' is not an integer")):
        run = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), argument, value], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and f"argument {argument}: {words}" in run.stderr, run.stderr[-2000:]


def test_a_device_this_machine_lacks_is_refused_by_name():
    import torch

    devices = ["nosuchdevice"] + ([] if torch.cuda.is_available() else ["cuda"])
    for script in ("evaluator.py", "training.py"):
        for device in devices:
            run = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--device", device], cwd=REPO,
                                 capture_output=True, text=True, timeout=120)
            assert run.returncode == 2 and f"argument --device: '{device}' cannot be used here" in run.stderr, \
                run.stderr[-2000:]
