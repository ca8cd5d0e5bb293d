"""labtools: the helpers students import in the metric-learning labs.

Modules: :mod:`labtools.data` (datasets, samplers, loaders), :mod:`labtools.models` (ConvNet,
features, checkpoints), :mod:`labtools.viz` (figures), :mod:`labtools.tsne` (t-SNE plots),
:mod:`labtools.umap_view` (UMAP of training and test embeddings in one view),
:mod:`labtools.explain` (Grad-CAM, vanilla gradients), :mod:`labtools.errors` (misclassified queries,
per-class reports), :mod:`labtools.neighbors` (k-nearest-neighbour search), :mod:`labtools.metrics`
(R-precision, MAP@R), :mod:`labtools.losses` (the losses Lab 4 provides), :mod:`labtools.dvml` (Lab 5's
DVML network), :mod:`labtools.validate` (input checks).
It holds no solution of a graded function.
"""

__version__ = "0.1.0"
