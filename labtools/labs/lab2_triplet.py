"""Lab 2: metric learning with the triplet loss; the trained network is a graded deliverable."""

from labtools.labs import FileDeliverable, LabSpec, Solution

SPEC = LabSpec(
    id="lab2_triplet",
    title="Lab 2: Metric learning with the triplet loss",
    solutions=(Solution("distances", extracted=True),
               Solution("evaluate_AP", reference="lab1_retrieval", extracted=True),
               Solution("evaluate_mAP", reference="lab1_retrieval", extracted=True),
               Solution("triplet_loss", 2.0), Solution("train_triplets", 1.0)),
    files=(FileDeliverable("checkpoint", "triplet_net.pt", 3.0, models=("mnist_triplet.pt",)),),
)
