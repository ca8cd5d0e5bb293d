"""Every shipped checkpoint loads into the ConvNet and its card matches a re-measurement."""

import hashlib
import json

import pytest
import torch

from autograder.checkpoints import CONFIGS, remeasure
from autograder.paths import REPO_MODELS
from labtools.models import ConvNet, load_checkpoint

CARDS = sorted(REPO_MODELS.glob("*.json"))
REQUIRED = {"dataset", "loss", "architecture", "seed", "epochs", "command", "device", "wall_s", "scores"}


def test_the_required_checkpoints_are_shipped():
    required = {"mnist_classifier", "mnist_triplet", "fashion_classifier", "fashion_triplet", "fashion_smoothap"}
    assert required <= {card.stem for card in CARDS}


@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: p.stem)
def test_card_describes_its_weights(card_path):
    card = json.loads(card_path.read_text())
    assert REQUIRED <= set(card), f"card lacks {REQUIRED - set(card)}"
    weights = card_path.with_suffix(".pt")
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == card["sha256"]
    raw = torch.load(weights, weights_only=True)
    net, record = load_checkpoint(weights)
    assert isinstance(net, ConvNet) and card["architecture"] == raw["architecture"] == "ConvNet"
    for key in ("dataset", "loss", "seed", "epochs"):
        assert record[key] == card[key]
    assert len(record["history"]["loss"]) == card["epochs"]
    assert card["command"].startswith(f"python -m autograder train {card_path.stem}")
    assert card_path.stem in CONFIGS


@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: p.stem)
def test_card_scores_match_a_remeasurement(card_path, require_data):
    require_data(json.loads(card_path.read_text())["dataset"])
    stated, measured = remeasure(card_path.stem)
    assert set(stated) == set(measured)
    for key, value in measured.items():
        assert value == pytest.approx(stated[key], abs=2e-4), key


def test_mnist_goals_of_the_course():
    classifier = json.loads((REPO_MODELS / "mnist_classifier.json").read_text())["scores"]
    triplet = json.loads((REPO_MODELS / "mnist_triplet.json").read_text())["scores"]
    assert classifier["test_accuracy"] >= 0.99
    assert triplet["map_100"] >= 0.98


REPORT_MAP = {"fashion_classifier": 0.61, "fashion_triplet": 0.79, "fashion_smoothap": 0.77}


@pytest.mark.parametrize("name", sorted(REPORT_MAP))
def test_fashion_networks_beat_the_student_report(name):
    """Lab 3: mAP over the 100 queries above the report's Table I (0.61, 0.79, 0.77)."""
    scores = json.loads((REPO_MODELS / f"{name}.json").read_text())["scores"]
    assert scores["map_100"] > REPORT_MAP[name], scores
    assert {"map_1000", "map_10000"} <= set(scores)


@pytest.mark.parametrize("name, goal", [
    ("fashion_classifier", 0.64),
    ("fashion_triplet", 0.82),
    ("fashion_smoothap", 0.88),
])
def test_fashion_goals_of_the_course(name, goal):
    assert json.loads((REPO_MODELS / f"{name}.json").read_text())["scores"]["map_100"] >= goal
