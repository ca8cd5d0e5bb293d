"""Lab 5's study: Deep Variational Metric Learning on Fashion-MNIST with classes 5-9 held out.

Lab 5's runs (:data:`RUNS`, shipped in ``models/lab5/``) train a :class:`~labtools.dvml.DVML`
network with :func:`autograder.training.fit` on Lab 4's held-out-class split: three settings of
the DVML loss and the plain semi-hard triplet baseline (:data:`SETTINGS`). Lab 4's study
(:mod:`autograder.labs.lab4_beyond.study`) trains, measures and tabulates them as its own runs, and
``python -m autograder unseen`` does both labs' (:data:`ALL_RUNS`).
"""

from __future__ import annotations

from dataclasses import dataclass

from autograder.labs.lab4_beyond.study import RUNS as LAB4_RUNS, Run
from autograder.labs.lab5_dvml.reference import dvml_loss, reparameterize
from autograder.paths import REPO_MODELS
from labtools.dvml import DVML

OUT_DIR = REPO_MODELS / "lab5"


@dataclass(frozen=True)
class DVMLSetting:
    """A setting of Lab 5's DVML loss: the weights (lambda1..lambda4) of each training phase.

    Two phases split the epochs in halves: in phase 1 the decoder's gradient does not reach the
    embedding, in phase 2 it does. One phase trains in phase 2 throughout.
    """

    phases: tuple[tuple[float, float, float, float], ...]
    margin: float = 0.2
    embedding_dim: int = 64
    notes: str = ""

    @property
    def hyperparameters(self) -> dict:
        return {"lambdas": [list(p) for p in self.phases], "margin": self.margin, "embedding_dim": self.embedding_dim}

    def make_net(self, num_classes: int) -> DVML:
        return DVML(embedding_dim=self.embedding_dim)

    def objective(self, epochs: int) -> "DVMLObjective":
        return DVMLObjective(self, epochs)


class DVMLObjective:
    """``dvml_loss`` of a DVML network's outputs with the phase and weights of the current epoch.

    Returns ``(total, terms)``, so :func:`autograder.training.fit` records each term's mean per epoch.
    """

    def __init__(self, setting: DVMLSetting, epochs: int):
        self.setting, self.epoch = setting, 1
        self.last_phase_1 = epochs // 2 if len(setting.phases) == 2 else 0  # the epochs of phase 1

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def phase(self) -> int:
        return 1 if self.epoch <= self.last_phase_1 else 2

    def __call__(self, net, images, labels):
        lambdas = self.setting.phases[0 if self.phase == 1 else -1]
        return dvml_loss(**net(images, reparameterize, phase=self.phase), labels=labels, lambdas=lambdas,
                         margin=self.setting.margin)


#: The DVML settings of the student report the lab follows (Experiments 1-3) and the baseline.
SETTINGS = {
    "dvml_two_phase_a": DVMLSetting(((1.0, 0.5, 0.5, 1.0), (0.8, 1.0, 0.4, 0.8)),
                                    notes="The report's Experiment 1: two phases, lambdas (1, 0.5, 0.5, 1) then "
                                          "(0.8, 1, 0.4, 0.8)."),
    "dvml_two_phase_b": DVMLSetting(((1.0, 1.0, 0.1, 1.0), (0.8, 1.0, 0.2, 0.8)),
                                    notes="The report's Experiment 2: two phases, lambdas (1, 1, 0.1, 1) then "
                                          "(0.8, 1, 0.2, 0.8)."),
    "dvml_one_phase": DVMLSetting(((1.0, 1.0, 1.0, 1.0),),
                                  notes="The report's Experiment 3: one phase (the decoder's gradient released "
                                        "from the start), every lambda 1."),
    "dvml_triplet": DVMLSetting(((0.0, 0.0, 0.0, 1.0),),
                                notes="The baseline: the same network trained by the semi-hard triplet loss of "
                                      "z_inv alone (lambdas 0, 0, 0, 1)."),
}


RUNS = {run.name: run for run in (Run("fashion", name, True, setting, OUT_DIR) for name, setting in SETTINGS.items())}
#: The runs of both labs' studies, which ``python -m autograder unseen`` trains and tabulates.
ALL_RUNS = {**LAB4_RUNS, **RUNS}
