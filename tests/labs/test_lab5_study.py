"""Lab 5's study (autograder.labs.lab5_dvml.study): DVML runs trained and measured by Lab 4's study."""

import hashlib
import json

import pytest
import torch

from autograder.labs.lab4_beyond import study as lab4
from autograder.labs.lab5_dvml.reference import dvml_loss
from autograder.labs.lab5_dvml.study import ALL_RUNS, OUT_DIR, RUNS, SETTINGS
from labtools.dvml import DVML
from labtools.models import load_checkpoint

CARDS = sorted(OUT_DIR.glob("*.json"))


def test_dvml_runs_three_settings_and_the_baseline_on_the_held_out_split():
    assert set(RUNS) == {f"fashion_{s}_heldout" for s in SETTINGS} and len(RUNS) == 4
    assert all(run.held_out and run.out_dir == OUT_DIR for run in RUNS.values())
    assert set(ALL_RUNS) == set(lab4.RUNS) | set(RUNS) and not set(lab4.RUNS) & set(RUNS)
    assert isinstance(RUNS["fashion_dvml_one_phase_heldout"].setting.make_net(8), DVML)


def test_dvml_card_describes_its_weights():
    assert {p.stem for p in CARDS} == set(RUNS)
    for path in CARDS:
        card, setting = json.loads(path.read_text()), RUNS[path.stem].setting
        net, record = load_checkpoint(path.with_suffix(".pt"))
        assert isinstance(net, DVML) and card["architecture"] == "DVML" and card["config"] == net.config
        assert card["hyperparameters"] == setting.hyperparameters and card["held_out_classes"] == list(lab4.HELD_OUT)
        assert len(record["history"]["term/kl"]) == card["epochs"]  # a curve per term
        assert hashlib.sha256(path.with_suffix(".pt").read_bytes()).hexdigest() == card["sha256"]


def dvml_outputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    features = torch.rand(12, 16, generator=g)
    mu, logvar, z_var = (0.3 * torch.randn(12, 4, generator=g) for _ in range(3))
    z_inv = torch.nn.functional.normalize(torch.randn(12, 4, generator=g), dim=1)
    return {"features": features, "mu": mu, "logvar": logvar, "z_inv": z_inv, "z_var": z_var,
            "reconstruction": torch.rand(12, 16, generator=g)}


@pytest.mark.slow
@pytest.mark.parametrize("card_path", CARDS, ids=lambda p: p.stem)
def test_card_scores_match_a_remeasurement(card_path, require_data):
    require_data(json.loads(card_path.read_text())["dataset"])
    stated, measured = lab4.remeasure(RUNS[card_path.stem])
    stated, measured = lab4.flat_scores(stated), lab4.flat_scores(measured)
    assert set(stated) == set(measured)
    for key, value in measured.items():
        assert value == pytest.approx(stated[key], abs=2e-4), key


@pytest.mark.parametrize("setting, phases", [
    ("dvml_two_phase_a", [1] * 5 + [2] * 5),
    ("dvml_one_phase", [2] * 10),
])
def test_dvml_objective_switches_phase_and_weights_halfway(setting, phases):
    setting = SETTINGS[setting]
    objective, outputs, labels = setting.objective(10), dvml_outputs(), torch.arange(12) % 3
    seen = []

    def net(images, sample, phase):
        seen.append(phase)
        return outputs

    for epoch in range(1, 11):
        objective.start_epoch(epoch)
        total, terms = objective(net, None, labels)
        lambdas = setting.phases[0 if phases[epoch - 1] == 1 else -1]
        expected, _ = dvml_loss(**outputs, labels=labels, lambdas=lambdas, margin=setting.margin)
        assert total.item() == pytest.approx(expected.item()) and set(terms) == {
            "kl", "reconstruction", "triplet_synthesized", "triplet_invariant"}
    assert seen == phases


@pytest.mark.slow
def test_a_dvml_run_trains_in_two_phases_and_writes_its_card(tmp_path, require_data):
    require_data("FashionMNIST")
    card = lab4.train_run(RUNS["fashion_dvml_two_phase_b_heldout"], epochs=2, out=tmp_path, progress=False)
    net, record = load_checkpoint(tmp_path / "fashion_dvml_two_phase_b_heldout.pt")
    assert isinstance(net, DVML) and card["architecture"] == "DVML"
    assert card["command"] == "python -m autograder unseen fashion_dvml_two_phase_b_heldout"
    history = record["history"]
    assert {"term/kl", "term/reconstruction", "term/triplet_synthesized", "term/triplet_invariant"} <= set(history)
    assert all(len(history[k]) == 2 for k in history if k.startswith("term/"))
    assert card["scores"]["seen"]["recall_at_k"]["1"] > 0.5  # two epochs already embed the trained classes
