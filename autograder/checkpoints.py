"""Training and measuring the shipped checkpoints in ``models/``, with their JSON cards.

``python -m autograder train <name>`` trains one configuration of :data:`CONFIGS` with its fixed
seed, writes ``models/<name>.pt`` (weights, history, scores) and ``models/<name>.json`` (the card),
and can be interrupted and rerun: it resumes from ``models/<name>.train.pt``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from autograder.evaluation import full_ranking_ap
from autograder.labs.lab2_triplet.reference import triplet_loss
from autograder.labs.lab3_smoothap.reference import smooth_ap_loss
from autograder.paths import REPO_MODELS as MODELS_DIR
from autograder.training import AUGMENTATIONS, PRECISIONS, SCHEDULES, accuracy, best_path, check_choice, fit
from labtools.data import fixed_test_indices, load_images, train_val_split
from labtools.models import ConvNet, extract_features, load_checkpoint, save_checkpoint


# Batch losses ``loss_fn(net, images, labels, **hyperparameters)``; without hyperparameters they
# are the labs' defaults (Lab 2: alpha 0.5, 10 anchors; Lab 3: tau 0.01).
def cross_entropy(net, images, labels):
    return F.cross_entropy(net(images), labels)


def triplet(net, images, labels, **hyperparameters):
    return triplet_loss(net.features(images), labels, **hyperparameters)


def smooth_ap(net, images, labels, **hyperparameters):
    return smooth_ap_loss(net.features(images), labels, **hyperparameters)


@dataclass(frozen=True)
class Config:
    """One reference checkpoint: data, loss and the optimization schedule.

    ``hyperparameters`` are passed to ``loss_fn`` as keywords. ``schedule`` names the learning-rate
    schedule (:data:`autograder.training.SCHEDULES`); with ``samples_per_class`` K, batches are
    class-balanced, ``batch_size // K`` classes x K images, else drawn uniformly; ``augment`` names
    the batches' augmentation (:data:`autograder.training.AUGMENTATIONS`). ``select`` is
    "last" (the weights after the last epoch) or "val_map" (those of the epoch of best mAP on the
    6,000 validation images). ``init`` names a shipped checkpoint of ``models/`` whose weights start
    the training (None: the seeded random initialization).
    """

    dataset: str
    loss: str
    loss_fn: object
    epochs: int = 100
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 100
    schedule: str = "constant"
    samples_per_class: int | None = None
    augment: str = "none"
    seed: int = 0
    select: str = "last"
    init: str | None = None
    hyperparameters: dict = field(default_factory=dict)
    notes: str = ""

    def sampler(self) -> str:
        """The card's description of how batches are drawn."""
        if self.samples_per_class is None:
            return f"uniform: batches of {self.batch_size} drawn without replacement (labtools.data.DeviceLoader)"
        return (f"class-balanced: {self.batch_size // self.samples_per_class} classes x {self.samples_per_class} "
                "images per batch (labtools.data.BalancedBatchSampler, seeded by seed + epoch)")


CONFIGS = {
    "mnist_classifier": Config("MNIST", "cross_entropy", cross_entropy,
                               notes="The lab's classification network: its features are the Lab 1 baseline."),
    "mnist_triplet": Config("MNIST", "triplet", triplet, hyperparameters={"alpha": 0.5, "num_anchors": 10},
                            notes="The Lab 2 reference: the lab's triplet loss, 10 anchors per batch of 100."),
    # Lab 3: the three Fashion-MNIST networks share the optimizer (SGD, momentum 0.9), the cosine
    # decay over all epochs and the batch size of 100; they differ in the loss and what it needs.
    "fashion_classifier": Config(
        "FashionMNIST", "cross_entropy", cross_entropy, lr=0.05, schedule="cosine", weight_decay=5e-4,
        select="val_map",
        notes="Lab 3 baseline, the classification network. lr 0.05 with cosine decay: a constant lr of 0.01 "
              "(the MNIST schedule) falls short of the goal map_100 >= 0.64 after 25 epochs (about 0.61). "
              "Without weight decay the features' mAP peaked early (0.67 at epoch 17) and fell (0.63 at epoch "
              "52) while the training loss went to 0: weight decay 5e-4, and the weights of the epoch of best "
              "validation mAP."),
    "fashion_triplet": Config(
        "FashionMNIST", "triplet", triplet, lr=0.001, schedule="cosine", samples_per_class=10,
        hyperparameters={"alpha": 0.5, "num_anchors": 100},
        notes="Lab 3: the Lab 2 triplet loss (margin 0.5) on class-balanced batches, every row an anchor (the "
              "batches are ordered by class, so the first 10 rows would all be one class). The sum over 100 "
              "anchors is 10x the Lab 2 loss, hence lr 0.001 (0.01 collapses the embedding)."),
    "fashion_smoothap": Config(
        "FashionMNIST", "smooth_ap", smooth_ap, lr=0.1, schedule="warmup_cosine", samples_per_class=10,
        augment="hflip", select="val_map", hyperparameters={"tau": 0.01},
        notes="Lab 3 reference: the Smooth-AP loss with the paper's temperature tau = 0.01 on class-balanced "
              "batches of 10 classes x 10 images (9 positives per query), the same batches as fashion_triplet, "
              "with left-right flips and the weights of the epoch of best validation mAP. lr 0.1: at lr 0.05 "
              "the validation mAP levelled off at 0.854 (map_100 0.874, fashion_smoothap_hflip); at 0.1 it "
              "passes 0.854 by epoch 61 and peaks at 0.861 (epoch 94). The 5 warm-up epochs keep lr 0.1 from "
              "killing features at the start: without them, seed 1 left some images with all-zero ReLU "
              "features after one epoch (seed 0 reached map_100 0.884, fashion_smoothap_nowarmup)."),
}
# Experiments towards Lab 3's Smooth-AP goal (map_100 >= 0.88), not shipped, each a variation of an
# earlier configuration; train one with python -m autograder train <name> --out <folder>. On the
# CPU (100 epochs, one thread) they reached map_100 / map_1000 / map_10000 of
#   v1 0.868 / 0.860 / 0.850             hflip 0.874 / 0.863 / 0.847
#   b200 0.875 / 0.860 / 0.853           shift 0.865 / 0.846 / 0.845
#   shift_b200 0.865 / 0.852 / 0.846     ft 0.869 / 0.859 / 0.853
#   ft_b200 0.868 / 0.854 / 0.848
# at lr 0.05, every one within noise of 0.87 (shifts underfit: training loss 0.135 per batch at
# epoch 100 against 0.073 without them); at lr 0.1,
#   nowarmup 0.884 / 0.853 / 0.852      b200_lr01 0.871 / 0.856 / 0.849
#   seed1 0.877 / 0.858 / 0.852         (fashion_smoothap: 0.882 / 0.860 / 0.854)
# so the goal is met by seed 0 and missed by seed 1 (0.880 on average). tau 0.02 and 0.05 (at
# lr 0.05, with flips), lr 0.2 and nowarmup with seed 1 stopped after the first epoch: some
# validation images had all-zero ReLU features, which have no direction to rank.
_BATCHES_OF_200 = {"batch_size": 200, "samples_per_class": 20}
for _name, _base, _changes, _notes in [
    ("fashion_smoothap_nowarmup", "fashion_smoothap", {"schedule": "cosine"},
     "fashion_smoothap without the warm-up: the cosine decay from lr 0.1 in the first epoch."),
    ("fashion_smoothap_seed1", "fashion_smoothap", {"seed": 1},
     "fashion_smoothap with seed 1 (initial weights, batches and flips)."),
    ("fashion_smoothap_hflip", "fashion_smoothap_nowarmup", {"lr": 0.05},
     "fashion_smoothap_nowarmup at lr 0.05."),
    ("fashion_smoothap_v1", "fashion_smoothap_hflip", {"augment": "none", "select": "last"},
     "the Lab 3 reference until 2026-12-02: fashion_smoothap_hflip without flips, the last epoch's weights."),
    ("fashion_smoothap_b200", "fashion_smoothap_hflip", _BATCHES_OF_200,
     "fashion_smoothap_hflip on batches of 10 classes x 20 images (19 positives per query)."),
    ("fashion_smoothap_shift", "fashion_smoothap_hflip", {"augment": "hflip_shift"},
     "fashion_smoothap_hflip with shifts of up to 2 pixels as well."),
    ("fashion_smoothap_shift_b200", "fashion_smoothap_b200", {"augment": "hflip_shift"},
     "fashion_smoothap_b200 with shifts of up to 2 pixels as well."),
    ("fashion_smoothap_ft", "fashion_smoothap_hflip", {"lr": 0.01, "init": "fashion_classifier"},
     "Smooth-AP fine-tuning of the Lab 3 classification network (lr 0.01), with flips."),
    ("fashion_smoothap_ft_b200", "fashion_smoothap_ft", _BATCHES_OF_200,
     "fashion_smoothap_ft on batches of 10 classes x 20 images."),
    ("fashion_smoothap_b200_lr01", "fashion_smoothap_nowarmup", _BATCHES_OF_200,
     "fashion_smoothap_nowarmup on batches of 10 classes x 20 images."),
]:
    CONFIGS[_name] = replace(CONFIGS[_base], notes=f"Experiment: {_notes}", **_changes)


def measure_scores(net: ConvNet, dataset: str, loss: str, root=None) -> dict[str, float]:
    """Scores of a card, measured on the fixed test set (and the official test split for accuracy).

    map_100: mAP of the first 100 queries of the fixed test set; map_1000: mAP over all its 1,000
    queries (each ranked against the 1,000); map_10000: mAP of the whole official test split,
    10,000 queries each ranked against the other 9,999; test_accuracy (classifiers only): accuracy
    on the 10,000 official test images.
    """
    images, labels = load_images(dataset, train=False, root=root)
    features = extract_features(net, images, progress=False)  # [10000, D]; the fixed set is a subset
    fixed = fixed_test_indices(labels)  # the rows of fixed_test_set, in its order
    ap = full_ranking_ap(features[fixed], labels[fixed])
    scores = {"map_100": ap[:100].mean().item(), "map_1000": ap.mean().item(),
              "map_10000": full_ranking_ap(features, labels).mean().item()}
    if loss == "cross_entropy":
        scores["test_accuracy"] = accuracy(net, torch.utils.data.TensorDataset(images, labels))
    return scores


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def train_checkpoint(name: str, *, epochs: int | None = None, device: str | None = None,
                     out: Path = MODELS_DIR, root=None, progress: bool = True, precision: str = "fp32") -> dict:
    """Train configuration ``name`` (resuming if interrupted) and write its weights and card.
    ``precision`` is the forward pass's arithmetic (:data:`autograder.training.PRECISIONS`)."""
    check_choice("configuration", name, CONFIGS)
    config = CONFIGS[name]
    epochs = config.epochs if epochs is None else epochs
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    net = ConvNet()
    if config.init is not None:
        load_checkpoint(MODELS_DIR / f"{config.init}.pt", net)
    train_set, val_set = train_val_split(config.dataset, root=root)
    loss_fn = functools.partial(config.loss_fn, **config.hyperparameters)
    history = fit(net, train_set, loss_fn, loss_name=config.loss, dataset_name=config.dataset,
                  epochs=epochs, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                  batch_size=config.batch_size, schedule=config.schedule, samples_per_class=config.samples_per_class,
                  augment=config.augment, checkpoint=out / f"{name}.train.pt", device=device, seed=config.seed,
                  val_set=val_set, select=config.select, progress=progress, precision=precision)
    net = net.cpu().eval()
    scores = measure_scores(net, config.dataset, config.loss, root=root)
    weights = save_checkpoint(out / f"{name}.pt", net, dataset=config.dataset, loss=config.loss,
                              seed=config.seed, epochs=epochs, history=history, scores=scores)
    card = {
        "name": name,
        "dataset": config.dataset,
        "loss": config.loss,
        "architecture": "ConvNet",
        "seed": config.seed,
        "epochs": epochs,
        "optimizer": {"name": "SGD", "lr": config.lr, "momentum": config.momentum,
                      **({"weight_decay": config.weight_decay} if config.weight_decay else {})},
        "schedule": f"{config.schedule}: {SCHEDULES[config.schedule]}",
        "batch_size": config.batch_size,
        "sampler": config.sampler(),
        "augmentation": AUGMENTATIONS[config.augment],
        "precision": PRECISIONS[precision],
        "initialization": ("random (torch's default, seeded)" if config.init is None else
                           f"the weights of models/{config.init}.pt, sha256 "
                           f"{hashlib.sha256((MODELS_DIR / f'{config.init}.pt').read_bytes()).hexdigest()}"),
        "hyperparameters": config.hyperparameters,
        **({"selected_epoch": 1 + max(range(epochs), key=history["val_map"].__getitem__),
            "selection": "the weights of the epoch of best mAP on the validation images (history val_map)"}
           if config.select == "val_map" else {}),
        "split": "54,000 train / 6,000 validation of the official training set (labtools.data.train_val_split)",
        "command": shlex.join(["python", "-m", "autograder", "train", name] + sys.argv[3:]),
        "device": describe_device(device),
        "torch": torch.__version__,
        "wall_s": round(sum(history["epoch_s"]), 1),
        "scores": {k: round(v, 6) for k, v in scores.items()},
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "notes": config.notes,
    }
    (out / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / f"{name}.train.pt").unlink(missing_ok=True)
    best_path(out / f"{name}.train.pt").unlink(missing_ok=True)
    return card


def rescore(name: str, out: Path = MODELS_DIR, root=None) -> dict:
    """Measure a shipped checkpoint's scores again and write them into its card (the weights are
    not touched): how a card gains a score added to :func:`measure_scores` after its training."""
    path = Path(out) / f"{name}.json"
    card = json.loads(path.read_text())
    net, _ = load_checkpoint(Path(out) / f"{name}.pt")
    card["scores"] = {k: round(v, 6) for k, v in measure_scores(net, card["dataset"], card["loss"], root=root).items()}
    card["scores_command"] = f"python -m autograder rescore {name}"
    path.write_text(json.dumps(card, indent=2) + "\n")
    return card


def remeasure(name: str, out: Path = MODELS_DIR, root=None) -> tuple[dict, dict]:
    """(card scores, freshly measured scores) of a shipped checkpoint."""
    card = json.loads((Path(out) / f"{name}.json").read_text())
    net, _ = load_checkpoint(Path(out) / f"{name}.pt")
    return card["scores"], measure_scores(net, card["dataset"], card["loss"], root=root)
