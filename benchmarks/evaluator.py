"""Seconds per full-ranking mAP: ours against scikit-learn, torchmetrics, pytorch-metric-learning and
the plain argsort version, side by side on the same embeddings.

    python benchmarks/evaluator.py [--n 10000 60000] [--data synthetic mnist] [--peers NAME ...]
                                   [--device cuda] [--threads T] [--smoke]

Every method ranks each of the N items against the N - 1 others (squared Euclidean distances of
unit rows) and returns the per-query AP or their mean, the mAP:

* ``ours``: ``autograder.evaluation.full_ranking_ap`` (integer keys sorted by value, see its module);
* ``plain``: :func:`plain_sort_full_ranking_ap` below, the evaluator as it was before issue 7
  (a stable argsort of every distance row, then a gather of the labels);
* ``sklearn``: a loop of ``sklearn.metrics.average_precision_score``, one call per query;
* ``torchmetrics``: ``RetrievalMAP`` on all N (N - 1) pairs, the query itself left out; its score is
  ``5 - d`` in float64 (positive, exact, same order), as torchmetrics >= 1.7.4 counts a score <= 0
  as not relevant;
* ``pml``: pytorch-metric-learning's ``AccuracyCalculator(include=("mean_average_precision",), k=None)``
  given the embeddings once (query = reference, so ``ref_includes_query=True``: faiss finds the N
  nearest and the query's own column is dropped).

Before timing, all of them must agree to 1e-6 on a tie-free synthetic subset (per query where a
peer returns per-query APs, on the mAP otherwise). Data: ``synthetic`` (random unit vectors around
10 class centres, float32) and ``mnist`` (features of the shipped ``models/mnist_classifier.pt``:
the test set for N <= 10,000, the training set above). Ours runs in a fresh process, which reports
its seconds and peak RSS. Above N = 10,000 the peers are skipped unless named with ``--peers``
(their time or memory grows with N^2). ``--smoke``: N = 500, all peers. Writes nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository on the path

from autograder.evaluation import full_ranking_ap  # noqa: E402
from autograder.labs.lab1_retrieval.reference import distances  # noqa: E402
from autograder.paths import REPO_MODELS  # noqa: E402
from benchmarks.cli import available_device, positive_int  # noqa: E402

PEERS = ("plain", "sklearn", "torchmetrics", "pml")
PEER_N = 10_000  # above this N, peers run only when named with --peers
PEER_CHUNK = 1 << 24  # distance entries per chunk in the peers that take chunks


def plain_sort_full_ranking_ap(features: torch.Tensor, labels: torch.Tensor, device=None) -> torch.Tensor:
    """The plain sort-based evaluator (before issue 7), kept as the baseline: float64 [N] on the CPU.

    features [N, D] unit rows, labels [N]: each row of the distance matrix is argsorted (stable)
    and the labels gathered in that order; AP = sum_k prec(k) rel(k) / T over the N - 1 others.
    """
    device = torch.device(device) if device is not None else features.device
    features, labels = features.to(device), labels.to(device)
    n = len(labels)
    chunk = max(1, PEER_CHUNK // max(n, 1))
    aps = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        dist = distances(features[start:stop], features)
        rows = torch.arange(stop - start, device=device)
        dist[rows, rows + start] = float("inf")  # the query ranks last, then is cut off
        order = torch.argsort(dist, dim=1, stable=True)[:, : n - 1]
        relevant = (labels[order] == labels[start:stop, None]).to(torch.float64)
        hits = torch.cumsum(relevant, dim=1)
        ranks = torch.arange(1, n, dtype=torch.float64, device=device)
        total = relevant.sum(dim=1).clamp_min(1.0)
        aps.append(((hits / ranks) * relevant).sum(dim=1).div(total).cpu())
    return torch.cat(aps)


def _rows_without_query(features, labels):
    """Yield (q, distances [C, N - 1], relevant [C, N - 1]) per chunk of queries q, query left out."""
    n = len(labels)
    chunk = max(1, PEER_CHUNK // max(n, 1))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        dist = distances(features[start:stop], features)
        others = torch.arange(n, device=dist.device)[None, :] != torch.arange(start, stop, device=dist.device)[:, None]
        relevant = labels[None, :] == labels[start:stop, None]
        c = stop - start
        yield torch.arange(start, stop), dist[others].view(c, n - 1), relevant[others].view(c, n - 1)


def sklearn_loop(features, labels, device=None) -> torch.Tensor:
    """Per-query AP by ``average_precision_score`` in a loop: float64 [N]."""
    from sklearn.metrics import average_precision_score

    aps = []
    for _, dist, relevant in _rows_without_query(features, labels):
        for d, r in zip(dist.cpu().numpy(), relevant.cpu().numpy()):
            aps.append(average_precision_score(r, -d) if r.any() else 0.0)
    return torch.tensor(aps, dtype=torch.float64)


def torchmetrics_map(features, labels, device=None) -> float:
    """mAP by torchmetrics' ``RetrievalMAP`` over all pairs, the query left out."""
    from torchmetrics.retrieval import RetrievalMAP

    device = torch.device(device) if device is not None else features.device
    metric = RetrievalMAP().to(device)
    for q, dist, relevant in _rows_without_query(features.to(device), labels.to(device)):
        indexes = q.to(device)[:, None].expand_as(dist)
        metric.update(5.0 - dist.double(), relevant, indexes)
    return metric.compute().item()


def pml_map(features, labels, device=None) -> float:
    """mAP by pytorch-metric-learning's ``AccuracyCalculator`` (faiss k-NN with k = N - 1)."""
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    device = torch.device(device) if device is not None else features.device
    calculator = AccuracyCalculator(include=("mean_average_precision",), k=None, device=device)
    return calculator.get_accuracy(features, labels)["mean_average_precision"]


METHODS = {"plain": plain_sort_full_ranking_ap, "sklearn": sklearn_loop, "torchmetrics": torchmetrics_map,
           "pml": pml_map}
LABELS = {"ours": "ours (full_ranking_ap)", "plain": "plain sort (argsort + gather)",
          "sklearn": "scikit-learn average_precision_score loop", "torchmetrics": "torchmetrics RetrievalMAP",
          "pml": "pytorch-metric-learning AccuracyCalculator"}


def synthetic(n: int, seed: int = 0, dim: int = 64, classes: int = 10):
    """Random unit vectors around ``classes`` random centres: float32 [n, dim] and int64 [n] labels."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(classes, dim, generator=g), dim=1)
    labels = torch.randint(classes, (n,), generator=g)
    noise = 0.2 * torch.randn(n, dim, generator=g)  # mAP about 0.78
    return torch.nn.functional.normalize(centres[labels] + noise, dim=1), labels


def mnist(n: int):
    """Features [n, 256] of the shipped classifier: MNIST test images for n <= 10,000, training above."""
    from labtools.data import load_images
    from labtools.models import extract_features, load_checkpoint

    images, labels = load_images("MNIST", train=n > 10_000, download=False)
    net, _ = load_checkpoint(REPO_MODELS / "mnist_classifier.pt")
    return extract_features(net, images[:n], progress=False), labels[:n]


def tie_free(features, labels) -> bool:
    """True when no query has a relevant item at exactly the same float32 distance as another item
    (methods that rank ties differently could disagree there)."""
    dist = distances(features, features)
    dist.fill_diagonal_(float("inf"))
    ranked, order = torch.sort(dist, dim=1)
    relevant = labels[order] == labels[:, None]
    tied = ranked[:, 1:] == ranked[:, :-1]
    return not bool((tied & (relevant[:, 1:] | relevant[:, :-1])).any())


def check_agreement(n: int, device) -> None:
    """Assert every method agrees with ours to 1e-6 on a tie-free synthetic set of n items."""
    seed = next(seed for seed in range(1, 100) if tie_free(*synthetic(n, seed)))
    features, labels = synthetic(n, seed)
    ours = full_ranking_ap(features, labels, device=device)
    gaps = {}
    for name, method in METHODS.items():
        result = method(features, labels, device=device)
        gaps[name] = (result - ours).abs().max().item() if torch.is_tensor(result) else abs(result - ours.mean().item())
    print(f"agreement on a tie-free synthetic set (N={n}, seed {seed}): max |difference| to ours: "
          + ", ".join(f"{name} {gap:.1e}" for name, gap in gaps.items()))
    bad = {name: gap for name, gap in gaps.items() if not gap <= 1e-6}
    if bad:
        raise SystemExit(f"disagreement above 1e-6: {bad}")
    print("agreement: all methods agree to 1e-6")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB: VmHWM of this program (getrusage's
    ru_maxrss would also count the parent's peak, which Linux carries across fork and exec)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


def measure_ours(path: str, device: str) -> None:
    """Child process: load (features, labels) from ``path``, warm up on 64 items, run ours once; save
    the per-query AP beside ``path`` and print its seconds and peak RSS as JSON."""
    features, labels = torch.load(path)
    full_ranking_ap(features[:64], labels[:64], device=device)
    before = peak_rss_mb()
    started = time.perf_counter()
    ap = full_ranking_ap(features, labels, device=device)
    seconds = time.perf_counter() - started
    torch.save(ap, path + ".ap")
    print(json.dumps({"seconds": seconds, "peak_mb": peak_rss_mb(), "before_mb": before}))


def run_ours(features, labels, device: str) -> dict:
    """Ours in a fresh process: {"seconds", "peak_mb", "before_mb", "ap": float64 [N]}."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "embedding.pt")
        torch.save((features, labels), path)
        command = [sys.executable, __file__, "--measure-ours", path, "--device", device,
                   "--threads", str(torch.get_num_threads())]
        child = subprocess.run(command, capture_output=True, text=True)
        if child.returncode:
            raise SystemExit(f"ours failed in its process:\n{child.stderr[-3000:]}")
        return {**json.loads(child.stdout.strip().splitlines()[-1]), "ap": torch.load(path + ".ap")}


def timed(method, features, labels, device):
    """(seconds, result) of one call."""
    gc.collect()
    started = time.perf_counter()
    result = method(features, labels, device=device)
    return time.perf_counter() - started, result


def benchmark(name: str, features, labels, peers, device: str) -> None:
    """Time ours (fresh process) and each peer on the same embedding; print the table and ratios."""
    n = len(labels)
    ours = run_ours(features, labels, device)
    print(f"\nN={n} {name}")
    print(f"  {'method':44}{'seconds':>9}{'peer/ours':>11}{'mAP':>9}  max |AP - ours| per query")
    print(f"  {LABELS['ours']:44}{ours['seconds']:9.2f}{1:11.1f}{ours['ap'].mean().item():9.4f}")
    ratios = {}
    for peer in peers:
        seconds, result = timed(METHODS[peer], features, labels, device)
        ratios[peer] = seconds / ours["seconds"]
        value = result.mean().item() if torch.is_tensor(result) else result
        gap = f"  {(result - ours['ap']).abs().max().item():.1e}" if torch.is_tensor(result) else ""
        print(f"  {LABELS[peer]:44}{seconds:9.2f}{ratios[peer]:11.1f}{value:9.4f}{gap}")
    if ratios:
        print(f"  ratios (peer / ours) at N={n}: " + ", ".join(f"{p} {r:.1f}x" for p, r in ratios.items()))
    print(f"  peak RSS of ours (fresh process, features loaded): {ours['peak_mb']:.0f} MB "
          f"({ours['before_mb']:.0f} MB before the call)")
    skipped = [p for p in PEERS if p not in peers]
    if skipped:
        print(f"  skipped at N={n}: {', '.join(skipped)} (time or memory grows as N^2; name them with --peers)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive_int, nargs="+", default=[10_000, 60_000], help="sizes N (default 10000 60000)")
    parser.add_argument("--data", nargs="+", choices=("synthetic", "mnist"), default=["synthetic", "mnist"])
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=None,
                        help=f"peers to time at every N (default: all, and only up to N={PEER_N})")
    parser.add_argument("--device", type=available_device, default="cpu", help="device of ours, plain, torchmetrics and pml (default cpu)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads for every method (default torch's)")
    parser.add_argument("--smoke", action="store_true", help="N=500, all peers: a quick check that it runs")
    parser.add_argument("--measure-ours", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.measure_ours:
        measure_ours(args.measure_ours, args.device)
        return 0
    sizes = [500] if args.smoke else args.n
    versions = {"torch": torch.__version__, "numpy": np.__version__}
    for module in ("sklearn", "torchmetrics", "pytorch_metric_learning", "faiss"):
        versions[module] = __import__(module).__version__
    print(f"device {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
          + f", {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
          + f"load average {os.getloadavg()[0]:.1f}")
    print(", ".join(f"{k} {v}" for k, v in versions.items()))
    check_agreement(200 if args.smoke else 500, args.device)
    for n in sizes:
        peers = args.peers or (PEERS if n <= PEER_N else ())
        for name in args.data:
            features, labels = synthetic(n) if name == "synthetic" else mnist(n)
            benchmark("synthetic (10 classes, 64-d)" if name == "synthetic" else "MNIST classifier features",
                      features, labels, peers, args.device)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
