"""What the loss tests share: a seeded batch and the comparison of two losses and their gradients
(tests/test_losses.py, tests/labs/test_lab4_beyond.py)."""

import pytest
import torch

B, D, C, K = 48, 16, 7, 3


def batch(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(B, D, generator=g, dtype=dtype)
    labels = torch.randint(C, (B,), generator=g)
    weight = torch.randn(C, D, generator=g, dtype=dtype)
    return features, labels, weight


def same_loss_and_gradients(ours, theirs, features, weight, their_weight):
    """Compare two losses and their gradients with respect to the features and the class weights:
    ours(f, w) takes the weights in our layout, theirs(f) holds a copy of them, and their_weight()
    returns the gradient of that copy in our layout."""
    f1, w1 = features.clone().requires_grad_(), weight.clone().requires_grad_()
    f2 = features.clone().requires_grad_()
    a, b = ours(f1, w1), theirs(f2)
    a.backward()
    b.backward()
    assert a.item() == pytest.approx(b.item(), rel=1e-10, abs=1e-12)
    assert torch.allclose(f1.grad, f2.grad, atol=1e-10)
    assert torch.allclose(w1.grad, their_weight(), atol=1e-10)


def true_cosines(features, labels, weight):
    """[B]: the cosine of each row with the best sub-center of its class, weight [C, K, D]."""
    unit = torch.nn.functional.normalize
    return torch.einsum("bd,bkd->bk", unit(features, dim=1), unit(weight[labels], dim=2)).amax(dim=1)
