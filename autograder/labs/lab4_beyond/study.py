"""Lab 4's study: five losses, trained on all classes and on half of them (zero-shot), on two datasets.

``python -m autograder unseen`` trains every run of :data:`RUNS` that ``models/lab4/`` lacks (each
resumable, seeded, with its card ``<name>.json``), measures them all and writes the table
``models/lab4/results.md``: for every dataset, loss and training (all classes or held out), the
metrics on the test images of the seen classes (0-4) and of the held-out ones (5-9). The same
command does the same for Lab 5's runs (:mod:`autograder.labs.lab5_dvml.study`, ``models/lab5/``),
which this module trains, measures and tabulates alike: a :class:`Run` carries its setting (the
loss and the network it trains) and its folder.

Every run trains an :class:`~labtools.models.EmbeddingNet` (the lab's ConvNet with the loss's class
vectors) with :func:`autograder.training.fit`; only the loss and its head differ. Metrics
(:func:`measure`): precision@1 of nearest-neighbour classification of the 10,000 test images
against the 54,000 training images (all classes, also for a network that never saw two of them),
overall and per class; on each test subset Recall@K (K = 1, 2, 4, ..., 32), NMI and F1 of k-means
with as many clusters as classes, and mAP (every image a query against the others of its subset).
All from float64 distances with fixed tie rules (:func:`score_features`), so that a re-measurement
gives a card's numbers whatever the thread count.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch.utils.data import TensorDataset

from autograder.checkpoints import describe_device
from autograder.evaluation import full_ranking_ap
from autograder.labs.lab4_beyond.reference import arcface_loss, f1, nmi, norm_softmax_loss, recall_at_k
from autograder.paths import REPO_MODELS
from autograder.training import SCHEDULES, fit
from labtools.data import load_images, train_val_split
from labtools.losses import epshn_triplet_loss, proxy_nca_loss, subcenter_arcface_loss
from labtools.models import EmbeddingNet, extract_features, load_checkpoint, save_checkpoint
from labtools.neighbors import nearest

OUT_DIR = REPO_MODELS / "lab4"
DATASETS = {"mnist": "MNIST", "fashion": "FashionMNIST"}
NUM_CLASSES = 10
#: The classes held out of training in the "heldout" runs: the last five, the zero-shot protocol of
#: CUB-200 and Cars196 (train on the first half of the classes, retrieve among the second half).
HELD_OUT = (5, 6, 7, 8, 9)
KS = (1, 2, 4, 8, 16, 32)
SUBSETS = {"seen": tuple(c for c in range(NUM_CLASSES) if c not in HELD_OUT), "unseen": HELD_OUT}

#: What every run shares (stated on each card).
EPOCHS, LR, MOMENTUM, BATCH_SIZE, SAMPLES_PER_CLASS, SCHEDULE, SEED = 10, 0.01, 0.9, 100, 20, "cosine", 0


class Setting(Protocol):
    """What a run trains: its network and objective, and what its card states (a :class:`Loss`, or a
    setting of Lab 5's DVML loss)."""

    hyperparameters: dict
    notes: str

    def make_net(self, num_classes: int) -> torch.nn.Module: ...

    def objective(self, epochs: int):
        """``loss_fn(net, images, labels)`` for :func:`fit`."""


@dataclass(frozen=True)
class Loss:
    """A loss of the study: ``loss_fn(net, images, labels)`` and the head it needs."""

    loss_fn: object
    hyperparameters: dict
    layer_norm: bool = False
    sub_centers: int = 1
    notes: str = ""

    def make_net(self, num_classes: int) -> EmbeddingNet:
        return EmbeddingNet(num_classes, layer_norm=self.layer_norm, sub_centers=self.sub_centers)

    def objective(self, epochs: int):
        """``loss_fn(net, images, labels)`` for :func:`fit`."""
        return functools.partial(self.loss_fn, **self.hyperparameters)


def _norm_softmax(net, images, labels, temperature):
    return norm_softmax_loss(net.features(images), labels, net.weight, temperature=temperature)


def _proxy_nca(net, images, labels, scale):
    return proxy_nca_loss(net.features(images), labels, net.weight, scale=scale)


def _arcface(net, images, labels, margin, scale):
    return arcface_loss(net.features(images), labels, net.weight, margin=margin, scale=scale)


def _subcenter_arcface(net, images, labels, margin, scale):
    return subcenter_arcface_loss(net.features(images), labels, net.weight, margin=margin, scale=scale)


def _epshn_triplet(net, images, labels, margin):
    return epshn_triplet_loss(net.features(images), labels, margin=margin)


LOSSES = {
    "norm_softmax": Loss(_norm_softmax, {"temperature": 0.05}, layer_norm=True,
                         notes="NormSoftmax (Zhai & Wu, BMVC 2019): layer-normalized embedding, bias-free "
                               "classifier on normalized class weights, temperature 0.05."),
    "proxy_nca": Loss(_proxy_nca, {"scale": 9.0},
                      notes="ProxyNCA with one proxy per class; scale 9 (a temperature of 1/9, as ProxyNCA++): "
                            "with unit vectors the squared distances lie in [0, 4], and scale 1 leaves the "
                            "softmax nearly flat."),
    "arcface": Loss(_arcface, {"margin": 0.5, "scale": 64.0},
                    notes="ArcFace (Deng et al., CVPR 2019) with pytorch-metric-learning's defaults: margin "
                          "0.5 rad (28.6 degrees), scale 64."),
    "subcenter_arcface": Loss(_subcenter_arcface, {"margin": 0.5, "scale": 64.0}, sub_centers=3,
                              notes="Sub-center ArcFace (Deng et al., ECCV 2020), 3 sub-centers per class, "
                                    "margin 0.5 rad, scale 64."),
    "epshn_triplet": Loss(_epshn_triplet, {"margin": 0.2}, sub_centers=0,
                          notes="Triplets of the easiest positive and a semi-hard negative per anchor (Xuan et "
                                "al., WACV 2020), margin 0.2, every row of the batch an anchor."),
}


@dataclass(frozen=True)
class Run:
    """One network of a study: a dataset (key of :data:`DATASETS`), its loss (the name of its
    setting), all classes or the last five held out; what it trains, and the folder it is shipped in."""

    dataset: str
    loss: str
    held_out: bool
    setting: Setting
    out_dir: Path

    @property
    def name(self) -> str:
        return f"{self.dataset}_{self.loss}_{'heldout' if self.held_out else 'all'}"

    @property
    def classes(self) -> tuple[int, ...]:
        return SUBSETS["seen"] if self.held_out else tuple(range(NUM_CLASSES))


RUNS = {run.name: run for run in (Run(d, name, h, loss, OUT_DIR) for d in DATASETS for name, loss in LOSSES.items()
                                  for h in (False, True))}


def training_set(run: Run, root=None) -> TensorDataset:
    """The 54,000 training images of the course's split, less those of the held-out classes."""
    return _trained_classes(run, train_val_split(DATASETS[run.dataset], root=root)[0])


def validation_set(run: Run, root=None) -> TensorDataset:
    """The 6,000 validation images of the course's split, less those of the held-out classes:
    what :func:`fit` measures after every epoch of ``run`` (the curves of its history)."""
    return _trained_classes(run, train_val_split(DATASETS[run.dataset], root=root)[1])


def _trained_classes(run: Run, dataset: TensorDataset) -> TensorDataset:
    images, labels = dataset.tensors
    keep = torch.isin(labels, torch.tensor(run.classes))
    return TensorDataset(images[keep], labels[keep])


def train_run(run: Run, *, epochs: int = EPOCHS, device: str | None = None, out: Path | None = None,
              root=None, progress: bool = True) -> dict:
    """Train ``run`` (resuming if interrupted), measure it, and write its weights and card
    (into ``out``, by default the run's :attr:`Run.out_dir`)."""
    name, loss = run.name, run.setting
    command = ["python", "-m", "autograder", "unseen", name] + (["--device", device] if device else [])
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(out or run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    net = loss.make_net(len(run.classes))
    history = fit(net, training_set(run, root), loss.objective(epochs),
                  loss_name=run.loss, dataset_name=DATASETS[run.dataset], epochs=epochs, lr=LR, momentum=MOMENTUM,
                  batch_size=BATCH_SIZE, schedule=SCHEDULE, samples_per_class=SAMPLES_PER_CLASS,
                  checkpoint=out / f"{name}.train.pt", device=device, seed=SEED, progress=progress,
                  val_set=validation_set(run, root))
    net = net.cpu().eval()
    scores = measure(net, run.dataset, root=root)
    weights = save_checkpoint(out / f"{name}.pt", net, dataset=DATASETS[run.dataset], loss=run.loss, seed=SEED,
                              epochs=epochs, history=history, scores=flat_scores(scores))
    card = {
        "name": name,
        "dataset": DATASETS[run.dataset],
        "loss": run.loss,
        "architecture": type(net).__name__,
        "config": net.config,
        "trained_classes": list(run.classes),
        "held_out_classes": list(HELD_OUT) if run.held_out else [],
        "seed": SEED,
        "epochs": epochs,
        "optimizer": {"name": "SGD", "lr": LR, "momentum": MOMENTUM},
        "schedule": f"{SCHEDULE}: {SCHEDULES[SCHEDULE]}",
        "batch_size": BATCH_SIZE,
        "sampler": f"class-balanced: {BATCH_SIZE // SAMPLES_PER_CLASS} classes x {SAMPLES_PER_CLASS} images per batch "
                   "(labtools.data.BalancedBatchSampler, seeded by seed + epoch)",
        "hyperparameters": loss.hyperparameters,
        "split": "the 54,000 training images of labtools.data.train_val_split, less the held-out classes' "
                 "when held out; evaluated on the 10,000 official test images",
        "validation": "after every epoch, the history's val_* metrics (autograder.training.validation_metrics) "
                      "on the 6,000 validation images of train_val_split, less the held-out classes' when held "
                      "out; not used to select the weights (the last epoch's are shipped)",
        "command": shlex.join(command),
        "device": describe_device(device),
        "torch": torch.__version__,
        "wall_s": round(sum(history["epoch_s"]), 1),
        "scores": scores,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "notes": loss.notes,
        "scores_command": "python -m autograder unseen --rescore",
    }
    (out / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / f"{name}.train.pt").unlink(missing_ok=True)
    return card


def measure(net, dataset: str, root=None) -> dict:
    """The study's metrics of ``net`` on ``dataset`` (a key of :data:`DATASETS`), rounded to 6 digits.

    Returns {"p_at_1": float, "p_at_1_per_class": [10 floats], "seen": {...}, "unseen": {...}},
    each subset's dict holding "p_at_1", "recall_at_k" ({K: float}), "nmi", "f1" and "map"; see
    :func:`score_features`, which computes them from the network's features.
    """
    name = DATASETS[dataset]
    test_images, test_labels = load_images(name, train=False, root=root)
    train, _ = train_val_split(name, root=root)
    queries = extract_features(net, test_images, progress=False)  # [10000, D]
    references = extract_features(net, train.tensors[0], progress=False)  # [54000, D]
    return score_features(queries, test_labels, references, train.tensors[1])


def score_features(queries, query_labels, references, reference_labels) -> dict:
    """:func:`measure`'s scores of the test features ``queries`` [Q, D] (labels [Q], in
    0..NUM_CLASSES-1) against the training features ``references`` [R, D] (labels [R]), rounded to
    6 digits.

    Deterministic: the same features give the same scores whatever ``torch.get_num_threads()``,
    the load or the size of the chunks of queries. Every distance is computed from float64 copies
    of the features. float32 distances are rounded to about 1e-7, and the two nearest training
    images of a test image are often closer than that (of fashion_arcface_heldout's 10,000, 6 are
    within 1e-7 of each other, 97 within 1e-6), so the order in which the BLAS or faiss sums the D
    products, which changes with the thread count and the shape of the product, could swap them
    (faiss did, for 1 test image in 10,000 between one and two threads); in float64 that order
    moves a distance by about 1e-15. Ties are broken by fixed rules: the nearest training image is
    the one of lowest index among those at the same distance (:func:`labtools.neighbors.nearest`,
    torch backend), Recall@K does not rank a query's nearest positive below the items tied with
    it, k-means takes the first center on ties, and mAP ranks tied items by index.
    """
    queries, references = queries.double(), references.double()
    _, index = nearest(queries, references, 1, backend="torch")
    correct = (reference_labels[index[:, 0]] == query_labels).double()  # [Q]
    per_class = torch.zeros(NUM_CLASSES, dtype=torch.float64).index_add_(0, query_labels, correct)
    per_class /= torch.bincount(query_labels, minlength=NUM_CLASSES)
    scores = {"p_at_1": correct.mean().item(), "p_at_1_per_class": per_class.tolist()}
    for subset, classes in SUBSETS.items():
        keep = torch.isin(query_labels, torch.tensor(classes))
        features, labels = queries[keep], query_labels[keep]
        scores[subset] = {
            "p_at_1": correct[keep].mean().item(),
            "recall_at_k": {str(k): v for k, v in recall_at_k(features, labels, KS).items()},
            "nmi": nmi(features, labels),
            "f1": f1(features, labels),
            "map": full_ranking_ap(features, labels).mean().item(),
        }
    return _rounded(scores)


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return round(value, 6)


def flat_scores(scores: dict) -> dict[str, float]:
    """:func:`measure`'s nested scores as one level of floats (``seen/recall_at_k/1`` ...), as checkpoints keep them."""
    flat = {}
    for key, value in scores.items():
        if isinstance(value, dict):
            flat.update({f"{key}/{k}": v for k, v in flat_scores(value).items()})
        elif isinstance(value, list):
            flat.update({f"{key}/{i}": v for i, v in enumerate(value)})
        else:
            flat[key] = value
    return flat


def remeasure(run: Run, out: Path | None = None, root=None) -> tuple[dict, dict]:
    """(card scores, freshly measured scores) of the shipped ``run``."""
    out, name = Path(out or run.out_dir), run.name
    card = json.loads((out / f"{name}.json").read_text())
    net, _ = load_checkpoint(out / f"{name}.pt")
    return card["scores"], measure(net, run.dataset, root=root)


def rescore_run(run: Run, out: Path | None = None) -> dict:
    """Measure the shipped ``run`` again and write the scores into its card and its checkpoint
    (the weights are not touched; the card's sha256 follows the rewritten file)."""
    out, name = Path(out or run.out_dir), run.name
    card = json.loads((out / f"{name}.json").read_text())
    net, record = load_checkpoint(out / f"{name}.pt")
    card["scores"] = measure(net, run.dataset)
    weights = save_checkpoint(out / f"{name}.pt", net, dataset=record["dataset"], loss=record["loss"],
                              seed=record["seed"], epochs=record["epochs"], history=record["history"],
                              scores=flat_scores(card["scores"]))
    card["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (out / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def table(cards: list[dict]) -> str:
    """The results table in Markdown: one row per card and test subset."""
    header = (["dataset", "loss", "trained on", "test classes", "P@1"] + [f"R@{k}" for k in KS]
              + ["NMI", "F1", "mAP"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for card in cards:
        trained = f"classes {card['trained_classes'][0]}-{card['trained_classes'][-1]}"
        trained = trained if card["held_out_classes"] else "all classes"
        for subset, classes in SUBSETS.items():
            s = card["scores"][subset]
            cells = ([card["dataset"], card["loss"], trained, f"{subset} ({', '.join(map(str, classes))})",
                      f"{s['p_at_1']:.3f}"] + [f"{s['recall_at_k'][str(k)]:.3f}" for k in KS]
                     + [f"{s['nmi']:.3f}", f"{s['f1']:.3f}", f"{s['map']:.3f}"])
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def drop_table(cards: list[dict]) -> str:
    """The precision drop of every loss with a run on all classes and a held-out one, in Markdown
    ("" when there is no such pair): the mean over the unseen (and over the seen) classes of the
    per-class P@1 of the run on all classes minus that of the held-out run, as the
    DML-for-classification report defines its "precision drop" (10-32 points on CUB-200)."""
    named = {card["name"]: card for card in cards}
    lines = ["| dataset | loss | unseen P@1, all classes | unseen P@1, held out | drop on unseen | drop on seen |",
             "|---|---|---|---|---|---|"]
    for name, held in named.items():
        full = named.get(name.removesuffix("_heldout") + "_all")
        if not name.endswith("_heldout") or full is None:
            continue
        drop = [a - h for a, h in zip(full["scores"]["p_at_1_per_class"], held["scores"]["p_at_1_per_class"])]
        unseen = [drop[c] for c in held["held_out_classes"]]
        seen = [drop[c] for c in held["trained_classes"]]
        lines.append(f"| {held['dataset']} | {held['loss']} | {full['scores']['unseen']['p_at_1']:.3f} | "
                     f"{held['scores']['unseen']['p_at_1']:.3f} | {sum(unseen) / len(unseen):.3f} | "
                     f"{sum(seen) / len(seen):.3f} |")
    return "" if len(lines) == 2 else "\n".join(lines) + "\n"


def main(runs: dict[str, Run], names=None, *, rescore: bool = False, device: str | None = None) -> str:
    """``python -m autograder unseen``: train the missing runs among ``names`` (by default all of
    ``runs``, ``{name: run}``), or rescore the shipped ones; then write the table ``results.md`` of
    the shipped runs of each folder of ``runs`` and return them."""
    for name in names or runs:
        run = runs[name]
        if rescore:
            rescore_run(run)
        elif not (run.out_dir / f"{name}.json").exists() or not (run.out_dir / f"{name}.pt").exists():
            print(f"training {name}", flush=True)
            train_run(run, device=device)
    texts = []
    for out in dict.fromkeys(run.out_dir for run in runs.values()):
        cards = [json.loads((out / f"{name}.json").read_text()) for name, run in runs.items()
                 if run.out_dir == out and (out / f"{name}.json").exists()]
        if cards:
            drops = drop_table(cards)
            texts.append(table(cards) + (f"\nPrecision drop (per-class P@1, all classes - held out):\n\n{drops}"
                                         if drops else ""))
            (out / "results.md").write_text(texts[-1])
    return "\n".join(texts)
