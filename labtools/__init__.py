"""labtools: the helpers students import in the metric-learning labs.

Modules: :mod:`labtools.data` (datasets, samplers, loaders), :mod:`labtools.models` (ConvNet,
features, checkpoints), :mod:`labtools.viz` (figures), :mod:`labtools.tsne` (t-SNE plots).
It holds no solution of a graded function.
"""

__version__ = "0.1.0"
