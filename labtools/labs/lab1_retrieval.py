"""Lab 1: image retrieval with a ConvNet's normalized features, loop-free distances, AP and mAP."""

from labtools.labs import LabSpec, Solution

SPEC = LabSpec(
    id="lab1_retrieval",
    title="Lab 1: Image retrieval and mean average precision",
    solutions=(Solution("distances", 1.5), Solution("evaluate_AP", 1.5), Solution("evaluate_mAP", 1.0)),
)
