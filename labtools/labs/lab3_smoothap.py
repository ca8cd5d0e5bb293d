"""Lab 3: cross-entropy, triplet and Smooth-AP on Fashion-MNIST."""

from labtools.labs import LabSpec, Solution

SPEC = LabSpec(
    id="lab3_smoothap",
    title="Lab 3: Cross-entropy, triplet and Smooth-AP on Fashion-MNIST",
    solutions=(Solution("distances", reference="lab1_retrieval", extracted=True),
               Solution("evaluate_AP", reference="lab1_retrieval", extracted=True),
               Solution("evaluate_mAP", reference="lab1_retrieval", extracted=True),
               Solution("triplet_loss", reference="lab2_triplet", extracted=True),
               Solution("smooth_ap_loss", 3.0), Solution("train")),
)
