"""Lab 4's study (autograder.labs.lab4_beyond.study): the shipped runs, their cards, and how they are made."""

import hashlib
import json
import os
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F

from autograder import evaluation
from autograder.labs.lab4_beyond.study import (DATASETS, HELD_OUT, KS, LOSSES, OUT_DIR, RUNS, drop_table, flat_scores,
                                               remeasure, rescore_run, score_features, table, train_run,
                                               training_set, validation_set)
from labtools import neighbors
from labtools.models import EmbeddingNet, load_checkpoint

CARDS = sorted(OUT_DIR.glob("*.json"))
#: The cards measured again by every run of the suite: the Fashion-MNIST held-out runs, whose unseen
#: classes the lab analyzes, always; the MNIST held-out runs and the runs on all classes, the slowest
#: tests of the suite (each embeds 64,000 images), with LABTOOLS_ALL_CARDS=1 (``make test-cards``),
#: which keeps CI under its 30 minutes; every card's fields are checked by every run.
REMEASURED = [p for p in CARDS if (p.stem.startswith("fashion_") and p.stem.endswith("_heldout"))
              or os.environ.get("LABTOOLS_ALL_CARDS") == "1"]


def test_twenty_runs_two_datasets_five_losses_all_classes_or_half_held_out():
    assert len(RUNS) == 20 and HELD_OUT == (5, 6, 7, 8, 9)
    assert {(r.dataset, r.loss, r.held_out) for r in RUNS.values()} == {
        (d, loss, h) for d in DATASETS for loss in LOSSES for h in (False, True)}
    assert all(run.setting is LOSSES[run.loss] and run.out_dir == OUT_DIR for run in RUNS.values())
    assert RUNS["fashion_arcface_heldout"].classes == tuple(range(5))
    assert RUNS["mnist_proxy_nca_all"].classes == tuple(range(10))


def test_every_run_is_shipped_with_its_card():
    assert {card.stem for card in CARDS} == set(RUNS)


@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: p.stem)
def test_card_describes_its_weights(card_path):
    card, run = json.loads(card_path.read_text()), RUNS[card_path.stem]
    loss = LOSSES[run.loss]
    weights = card_path.with_suffix(".pt")
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == card["sha256"]
    net, record = load_checkpoint(weights)
    assert isinstance(net, EmbeddingNet) and record["architecture"] == card["architecture"] == "EmbeddingNet"
    assert net.config == card["config"] == {"num_classes": len(run.classes), "layer_norm": loss.layer_norm,
                                            "sub_centers": loss.sub_centers}
    assert card["trained_classes"] == list(run.classes)
    assert card["held_out_classes"] == (list(HELD_OUT) if run.held_out else [])
    assert (record["dataset"], record["loss"]) == (card["dataset"], card["loss"]) == (DATASETS[run.dataset], run.loss)
    assert len(record["history"]["loss"]) == card["epochs"]
    if run.held_out:  # trained with validation: the curves of every metric, one value per epoch
        assert {key for key in record["history"] if key.startswith("val_")} == {
            "val_map", "val_recall_at_1", "val_recall_at_2", "val_recall_at_4", "val_recall_at_8", "val_p_at_1",
            "val_nmi"}
        assert all(len(record["history"][key]) == card["epochs"] and 0 <= min(record["history"][key])
                   and max(record["history"][key]) <= 1 for key in record["history"] if key.startswith("val_"))
        assert "validation" in card
    assert card["hyperparameters"] == loss.hyperparameters
    assert card["command"].startswith(f"python -m autograder unseen {card_path.stem}")
    assert record["scores"] == pytest.approx(flat_scores(card["scores"]))


@pytest.mark.slow
@pytest.mark.parametrize("card_path", REMEASURED, ids=lambda p: p.stem)
def test_card_scores_match_a_remeasurement(card_path, require_data):
    require_data(json.loads(card_path.read_text())["dataset"])
    stated, measured = remeasure(RUNS[card_path.stem])
    stated, measured = flat_scores(stated), flat_scores(measured)
    assert set(stated) == set(measured)
    for key, value in measured.items():
        assert value == pytest.approx(stated[key], abs=2e-4), key


def test_rescoring_rewrites_the_scores_not_the_weights(tmp_path, monkeypatch):
    """rescore_run measures the shipped network again (here a stand-in for :func:`measure`, which
    test_card_scores_match_a_remeasurement runs for real) and writes the scores into the card and
    the checkpoint; the weights stay as they are, the card's sha256 follows the rewritten file."""
    from autograder.labs.lab4_beyond import study

    name = "mnist_epshn_triplet_heldout"
    for suffix in (".pt", ".json"):
        (tmp_path / f"{name}{suffix}").write_bytes((OUT_DIR / f"{name}{suffix}").read_bytes())
    shipped, _ = load_checkpoint(OUT_DIR / f"{name}.pt")
    fresh = json.loads((tmp_path / f"{name}.json").read_text())["scores"]
    fresh["p_at_1"], fresh["unseen"]["nmi"] = 0.123, 0.456
    measured_nets = []

    def measure(net, dataset, root=None):
        measured_nets.append((net, dataset))
        return fresh

    monkeypatch.setattr(study, "measure", measure)
    rescored = rescore_run(RUNS[name], out=tmp_path)
    ((net, dataset),) = measured_nets
    assert dataset == "mnist" and all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                                        shipped.state_dict().values()))
    written = json.loads((tmp_path / f"{name}.json").read_text())
    assert written["scores"] == rescored["scores"] == fresh
    assert hashlib.sha256((tmp_path / f"{name}.pt").read_bytes()).hexdigest() == rescored["sha256"] != \
        hashlib.sha256((OUT_DIR / f"{name}.pt").read_bytes()).hexdigest()
    net, record = load_checkpoint(tmp_path / f"{name}.pt")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), shipped.state_dict().values()))
    assert record["scores"] == flat_scores(fresh) and record["scores"]["unseen/nmi"] == 0.456


def test_the_table_is_the_cards():
    cards = [json.loads((OUT_DIR / f"{name}.json").read_text()) for name in RUNS]
    text = table(cards)
    rows = text.strip().split("\n")[2:]
    assert len(rows) == 2 * len(CARDS)
    drops = drop_table(cards)
    assert (OUT_DIR / "results.md").read_text() == (
        text + "\nPrecision drop (per-class P@1, all classes - held out):\n\n" + drops)
    full, held = (json.loads((OUT_DIR / f"fashion_arcface_{t}.json").read_text()) for t in ("all", "heldout"))
    row = next(r for r in drops.split("\n") if r.startswith("| FashionMNIST | arcface |"))
    unseen_drop = sum(full["scores"]["p_at_1_per_class"][c] - held["scores"]["p_at_1_per_class"][c]
                      for c in HELD_OUT) / len(HELD_OUT)
    assert row.split("|")[5].strip() == f"{unseen_drop:.3f}"
    assert len(drops.strip().split("\n")) == 2 + len(RUNS) // 2 and drop_table(cards[:1]) == ""
    card = json.loads((OUT_DIR / "fashion_arcface_heldout.json").read_text())
    unseen = next(r for r in rows if "| FashionMNIST | arcface | classes 0-4 | unseen" in r)
    cells = [c.strip() for c in unseen.strip("|").split("|")]
    assert cells[4] == f"{card['scores']['unseen']['p_at_1']:.3f}"
    assert cells[5:5 + len(KS)] == [f"{card['scores']['unseen']['recall_at_k'][str(k)]:.3f}" for k in KS]
    assert cells[-1] == f"{card['scores']['unseen']['map']:.3f}"


def clustered(per_class, noise, seed=0, d=16):
    """(queries, their labels, references, theirs): unit float32 rows around one random center per
    class, per_class[0] queries and per_class[1] references of each of the ten classes."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(10, d, generator=g)
    out = []
    for n in per_class:
        labels = torch.arange(10).repeat_interleave(n)
        out += [F.normalize(centers[labels] + noise * torch.randn(len(labels), d, generator=g), dim=1), labels]
    return out


@contextmanager
def threads(n):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_scores_do_not_depend_on_the_thread_count_or_the_chunks(monkeypatch):
    data = clustered((50, 300), noise=1.5)  # overlapping classes: many near-tied neighbours
    with threads(1):
        expected = score_features(*data)
    assert 0.3 < expected["p_at_1"] < 0.95 and 0.1 < expected["seen"]["nmi"] < 0.9
    for n in (2, 4):  # full_ranking_ap takes chunks of queries by thread count
        with threads(n):
            assert score_features(*data) == expected, n
    monkeypatch.setattr(neighbors, "CHUNK_ELEMENTS", 7 * 3000)  # 7 test images a chunk, against 3,000
    monkeypatch.setattr(evaluation, "CHUNK_ELEMENTS", 11 * 400)
    with threads(2):
        assert score_features(*data) == expected


def test_nearest_training_image_ties_go_to_the_lowest_index_near_ties_are_measured_in_float64():
    queries, query_labels, references, reference_labels = clustered((20, 20), noise=0.1)
    assert score_features(queries, query_labels, references, reference_labels)["p_at_1_per_class"] == [1.0] * 10
    e = torch.eye(16)
    # test images 0 (class 0) and 20 (class 1) each on two training images at distance 0, the
    # first of class 5, then 0 for image 0; of class 1, then 5 for image 20: the lower index wins
    queries[0], queries[20] = e[2], e[3]
    tied, tied_labels = torch.stack([e[2], e[2], e[3], e[3]]), torch.tensor([5, 0, 1, 5])
    # test image 40 (class 2) against [1, 2e-4] (class 5) and [1, 1e-4] (class 2): 4e-8 and 1e-8
    # away in float64, but both 0 in float32 (1 + 4e-8 rounds to 1), where the first would win
    queries[40] = e[0]
    near, near_labels = torch.stack([e[0] + 2e-4 * e[1], e[0] + 1e-4 * e[1]]), torch.tensor([5, 2])
    assert (2 - 2 * F.normalize(near, dim=1) @ e[0]).tolist() == [0.0, 0.0]
    references, reference_labels = torch.cat([tied, near, references]), torch.cat([tied_labels, near_labels,
                                                                                   reference_labels])
    scores = score_features(queries, query_labels, references, reference_labels)
    assert scores["p_at_1_per_class"] == [0.95] + [1.0] * 9  # image 0 wrong, 20 and 40 right
    swap = torch.tensor([1, 0, 3, 2] + list(range(4, len(references))))  # each tied pair the other way round
    swapped = score_features(queries, query_labels, references[swap], reference_labels[swap])
    assert swapped["p_at_1_per_class"] == [1.0, 0.95] + [1.0] * 8  # image 20 wrong, 0 and 40 right


def test_flat_scores_name_every_number():
    assert flat_scores({"p_at_1": 0.5, "p_at_1_per_class": [0.1, 0.2], "seen": {"recall_at_k": {"1": 0.3}}}) == {
        "p_at_1": 0.5, "p_at_1_per_class/0": 0.1, "p_at_1_per_class/1": 0.2, "seen/recall_at_k/1": 0.3}


def test_held_out_classes_are_left_out_of_training(require_data):
    require_data("MNIST")
    images, labels = training_set(RUNS["mnist_arcface_heldout"]).tensors
    everything = training_set(RUNS["mnist_arcface_all"]).tensors[1]
    assert len(everything) == 54_000 and set(labels.tolist()) == set(range(5))
    assert len(labels) == int((everything < 5).sum()) == len(images)
    val_labels = validation_set(RUNS["mnist_arcface_heldout"]).tensors[1]
    assert set(val_labels.tolist()) == set(range(5)) and len(validation_set(RUNS["mnist_arcface_all"])) == 6000


@pytest.mark.slow
def test_a_run_trains_and_writes_its_card(tmp_path, require_data):
    require_data("MNIST")
    card = train_run(RUNS["mnist_subcenter_arcface_heldout"], epochs=1, out=tmp_path, progress=False)
    assert card["command"] == "python -m autograder unseen mnist_subcenter_arcface_heldout"
    assert json.loads((tmp_path / "mnist_subcenter_arcface_heldout.json").read_text()) == card
    assert not (tmp_path / "mnist_subcenter_arcface_heldout.train.pt").exists()
    net, _ = load_checkpoint(tmp_path / "mnist_subcenter_arcface_heldout.pt")
    assert net.weight.shape == (5, 3, 256)
    assert len(load_checkpoint(tmp_path / "mnist_subcenter_arcface_heldout.pt")[1]["history"]["val_recall_at_1"]) == 1
    scores = card["scores"]
    assert len(scores["p_at_1_per_class"]) == 10 and set(scores) == {"p_at_1", "p_at_1_per_class", "seen", "unseen"}
    assert set(scores["seen"]["recall_at_k"]) == {str(k) for k in KS}
    assert scores["seen"]["p_at_1"] > 0.9  # one epoch of MNIST already separates the trained classes
    per_class = torch.tensor(scores["p_at_1_per_class"])
    overall = (per_class * torch.tensor([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])).sum() / 10_000
    assert overall.item() == pytest.approx(scores["p_at_1"], abs=1e-5)  # MNIST's test images per class
