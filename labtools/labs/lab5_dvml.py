"""Lab 5 (advanced, optional): Deep Variational Metric Learning."""

from labtools.labs import LabSpec, Solution

SPEC = LabSpec(
    id="lab5_dvml",
    title="Lab 5 (advanced, optional): Deep Variational Metric Learning",
    solutions=(Solution("distances", reference="lab1_retrieval", extracted=True),
               *(Solution(name, reference="lab4_beyond") for name in ("recall_at_k", "kmeans", "contingency_table",
                                                                      "nmi", "f1")),
               Solution("kl_divergence", 1.0), Solution("reparameterize", 1.0), Solution("semihard_triplets", 1.5),
               Solution("semihard_triplet_loss", 1.0), Solution("dvml_loss", 1.5)),
)
