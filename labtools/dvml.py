"""The network of Lab 5, Deep Variational Metric Learning (DVML, Lin et al., ECCV 2018).

A :class:`~labtools.models.ConvNet` backbone gives 256-d features; three linear heads map them to
the mean ``mu`` and log-variance ``logvar`` of the intra-class variance, shared by all classes,
and to the intra-class-invariant embedding ``z_inv`` (L2-normalized, the network's output at
test time). A sample ``z_var ~ N(mu, diag(exp(logvar)))`` drawn by the sampling function passed
to :meth:`DVML.forward` (the lab's ``reparameterize``) is added to ``z_inv``; a two-layer decoder
reconstructs the backbone features from ``z_inv + z_var``. The losses are the lab's.
"""

import torch
from torch import nn
from torch.nn import functional as F

from labtools.models import FEATURE_DIM, ConvNet

__all__ = ["DVML"]


class DVML(nn.Module):
    """Backbone, the heads ``mu``, ``logvar``, ``invariant`` (each ``Linear(256, D)``) and the
    decoder ``Linear(D, 256), ReLU, Linear(256, 256)``.

    backbone: a :class:`ConvNet` (a new one by default; a trained one to start from its
    weights), used through ``backbone.embed``, so its classification layer is left unused.
    embedding_dim: D, the size of ``mu``, ``logvar``, ``z_inv`` and ``z_var``.
    ``net.features(x)`` is the test-time embedding, so ``labtools.models.extract_features`` and
    the evaluation of the earlier labs apply to a DVML network unchanged.
    """

    def __init__(self, backbone=None, embedding_dim=64):
        super().__init__()
        if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(f"embedding_dim must be a positive integer, got {embedding_dim!r}")
        self.backbone = ConvNet() if backbone is None else backbone
        self.embedding_dim = embedding_dim
        self.mu = nn.Linear(FEATURE_DIM, embedding_dim)
        self.logvar = nn.Linear(FEATURE_DIM, embedding_dim)
        self.invariant = nn.Linear(FEATURE_DIM, embedding_dim)
        self.decoder = nn.Sequential(nn.Linear(embedding_dim, FEATURE_DIM), nn.ReLU(),
                                     nn.Linear(FEATURE_DIM, FEATURE_DIM))

    @property
    def config(self):
        """The constructor's arguments but the backbone, stored in a checkpoint to rebuild the network."""
        return {"embedding_dim": self.embedding_dim}

    def encode(self, x):
        """Images ``[B, 1, 28, 28]`` to a dict of ``features`` ``[B, 256]`` (the backbone's
        unnormalized output), ``mu``, ``logvar`` and ``z_inv`` ``[B, D]`` (unit rows)."""
        features = self.backbone.embed(x)
        return {"features": features, "mu": self.mu(features), "logvar": self.logvar(features),
                "z_inv": F.normalize(self.invariant(features), dim=1)}

    def decode(self, z, phase=1):
        """Reconstruct backbone features ``[B, 256]`` from a synthesized embedding z ``[B, D]``.

        Phase 1 detaches z, so that the reconstruction trains the decoder only; phase 2 lets its
        gradient reach the heads and the backbone.
        """
        _check_phase(phase)
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.embedding_dim:
            raise ValueError(f"the decoder expects an embedding of shape [B, {self.embedding_dim}], got {_shape(z)}")
        return self.decoder(z.detach() if phase == 1 else z)

    def forward(self, x, sample, phase=1):
        """Encode images ``[B, 1, 28, 28]``, draw ``z_var = sample(mu, logvar)`` and decode.

        sample: a function of ``mu, logvar`` ``[B, D]`` returning a draw ``[B, D]`` of
        N(mu, diag(exp(logvar))), the lab's ``reparameterize``. phase: 1 or 2 (see :meth:`decode`).
        Returns a dict of tensors: ``features`` ``[B, 256]``, ``mu``, ``logvar``, ``z_inv``,
        ``z_var`` ``[B, D]`` and ``reconstruction`` ``[B, 256]`` (the decoder's output from
        ``z_inv + z_var``), the arguments of the lab's ``dvml_loss`` besides the labels.
        """
        _check_phase(phase)
        if not callable(sample):
            raise ValueError(f"sample must be a function of (mu, logvar), got {type(sample).__name__}")
        out = self.encode(x)
        out["z_var"] = sample(out["mu"], out["logvar"])
        if not isinstance(out["z_var"], torch.Tensor) or out["z_var"].shape != out["mu"].shape:
            raise ValueError(f"sample(mu, logvar) must return a tensor of mu's shape {list(out['mu'].shape)}, "
                             f"got {_shape(out['z_var'])}")
        out["reconstruction"] = self.decode(out["z_inv"] + out["z_var"], phase)
        return out

    def features(self, x):
        """The test-time embedding ``z_inv`` ``[B, D]`` (unit rows) of images ``[B, 1, 28, 28]``."""
        return self.encode(x)["z_inv"]


def _check_phase(phase):
    if isinstance(phase, bool) or phase not in (1, 2):
        raise ValueError(f"phase must be 1 (decoder gradient stopped) or 2 (released), got {phase!r}")


def _shape(value):
    return list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
