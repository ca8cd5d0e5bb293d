"""Lab 4: classification losses, unseen classes, Recall@K, NMI and F1."""

from labtools.labs import LabSpec, Solution

SPEC = LabSpec(
    id="lab4_beyond",
    title="Lab 4: Beyond the triplet loss: classification losses, unseen classes, clustering metrics",
    solutions=(Solution("distances", reference="lab1_retrieval", extracted=True), Solution("recall_at_k", 1.5),
               Solution("kmeans", extracted=True), Solution("contingency_table", extracted=True),
               Solution("nmi", 1.5), Solution("f1", 1.5), Solution("NormSoftmax", 1.0),
               Solution("norm_softmax_loss", 1.0), Solution("arcface_loss", 1.0)),
)
