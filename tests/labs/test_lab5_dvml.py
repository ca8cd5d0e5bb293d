"""Lab 5, DVML: the reference (autograder.labs.lab5_dvml.reference) and the provided network (labtools.dvml).

pytorch-metric-learning's ``TripletMarginMiner(margin, type_of_triplets="semihard")`` keeps the
triplets with 0 < d(a, n) - d(a, p) <= margin, in ``LpDistance()`` (Euclidean, not squared, of
normalized embeddings) by default: the test passes ``LpDistance(power=2)``, the lab's distance.
The upper end then differs: pml keeps d(a, n) = d(a, p) + margin, ours leaves it out (an exact
tie that random float64 batches do not produce; ``test_semihard_triplets_hand_example`` pins ours).
"""

import functools
import inspect
import itertools

import pytest
import torch
from torch.nn import functional as F

from autograder.labs.lab5_dvml import reference as lab5
from autograder.labs.lab5_dvml.reference import (
    dvml_loss,
    kl_divergence,
    reparameterize,
    semihard_triplet_loss,
    semihard_triplets,
)
from labtools.checks import loop_violations
from labtools.dvml import DVML
from labtools.models import extract_features

GRADED = ("kl_divergence", "reparameterize", "semihard_triplets", "semihard_triplet_loss", "dvml_loss")


def batch(seed, b=14, d=6, classes=5):
    """Random float64 features [b, d] and labels [b] (some classes may have one member or none)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=torch.float64), torch.randint(classes, (b,), generator=g)


def brute_force_triplets(features, labels, margin):
    """The semi-hard triplets, triple loop over the batch, distances computed pair by pair."""
    x = F.normalize(features, dim=1)
    triplets = []
    for a, p, n in itertools.product(range(len(labels)), repeat=3):
        if a != p and labels[a] == labels[p] and labels[a] != labels[n]:
            ap, an = (x[a] - x[p]).square().sum(), (x[a] - x[n]).square().sum()
            if ap < an < ap + margin:
                triplets.append((a, p, n))
    return triplets


def images(b=6, seed=0):
    return torch.randn(b, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kl_divergence_equals_torch_distributions(seed):
    g = torch.Generator().manual_seed(seed)
    mu, logvar = torch.randn(2, 9, 5, generator=g, dtype=torch.float64)
    posterior = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(posterior, prior).sum(dim=1).mean()
    assert kl_divergence(mu, logvar).item() == pytest.approx(expected.item(), rel=1e-12)
    assert kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0


def test_reparameterize_has_the_mean_and_variance_over_many_draws():
    mu = torch.tensor([[0.5, -1.0, 2.0, 0.0]], dtype=torch.float64).expand(200_000, 4)
    logvar = torch.tensor([[0.0, -2.0, 1.0, 0.5]], dtype=torch.float64).expand(200_000, 4)
    z = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    assert z.shape == mu.shape and z.dtype == torch.float64
    assert torch.allclose(z.mean(dim=0), mu[0], atol=0.02)
    assert torch.allclose(z.var(dim=0), logvar[0].exp(), rtol=0.02)


def test_reparameterize_is_reproducible_with_a_seeded_generator():
    mu, logvar = torch.randn(2, 8, 3)
    first = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(7))
    again = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(7))
    other = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_reparameterize_passes_gradients_to_mu_and_logvar():
    mu, logvar = torch.randn(2, 8, 3, dtype=torch.float64).unbind(0)
    mu.requires_grad_()
    logvar.requires_grad_()
    z = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    z.sum().backward()
    assert torch.equal(mu.grad, torch.ones_like(mu))  # dz/dmu = 1
    eps = (z - mu) / (0.5 * logvar).exp()
    assert torch.allclose(logvar.grad, 0.5 * (0.5 * logvar).exp() * eps)  # dz/dlogvar = sigma eps / 2


@pytest.mark.parametrize("margin", [0.1, 0.5])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_semihard_triplets_equal_the_brute_force(seed, margin):
    features, labels = batch(seed)
    a, p, n = semihard_triplets(features, labels, margin)
    expected = brute_force_triplets(features, labels, margin)
    assert a.dtype == p.dtype == n.dtype == torch.int64
    assert list(zip(a.tolist(), p.tolist(), n.tolist())) == expected  # same triplets, same (sorted) order
    assert expected


def test_semihard_triplets_hand_example():
    """Unit rows at 0, 90, 270 and 180 degrees: d(0, 1) = d(0, 2) = d(1, 3) = 2, d(0, 3) = d(1, 2) = 4.
    A negative as far as the positive, or exactly margin farther, is not semi-hard."""
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 2])
    assert [t.tolist() for t in semihard_triplets(features, labels, margin=2.5)] == [[0, 1], [1, 0], [3, 2]]
    assert [t.tolist() for t in semihard_triplets(features, labels, margin=2.0)] == [[], [], []]


@pytest.mark.parametrize("margin", [0.1, 0.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_semihard_triplets_match_pytorch_metric_learning(seed, margin):
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import distances, miners

    features, labels = batch(seed, b=32, d=8, classes=4)
    miner = miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard",
                                      distance=distances.LpDistance(power=2))
    theirs = set(zip(*[t.tolist() for t in miner(features, labels)]))
    ours = set(zip(*[t.tolist() for t in semihard_triplets(features, labels, margin)]))
    assert ours == theirs and len(ours) > 10


@pytest.mark.parametrize("margin", [0.1, 0.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_semihard_triplet_loss_equals_the_definition(seed, margin):
    features, labels = batch(seed)
    f1, f2 = features.clone().requires_grad_(), features.clone().requires_grad_()
    x = F.normalize(f2, dim=1)
    hinges = [((x[a] - x[p]).square().sum() - (x[a] - x[n]).square().sum() + margin).clamp_min(0)
              for a, p, n in brute_force_triplets(features, labels, margin)]
    expected = torch.stack(hinges).mean()
    ours = semihard_triplet_loss(f1, labels, margin)
    ours.backward()
    expected.backward()
    assert ours.item() == pytest.approx(expected.item(), rel=1e-12)
    assert torch.allclose(f1.grad, f2.grad, atol=1e-12)


def test_semihard_triplet_loss_without_a_triplet_is_zero_with_a_gradient():
    features = torch.randn(5, 4, requires_grad=True)
    loss = semihard_triplet_loss(features, torch.arange(5))  # no positives
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(features.grad, torch.zeros_like(features))


def test_dvml_forward_shapes_and_test_time_embedding():
    torch.manual_seed(0)
    net = DVML(embedding_dim=16)
    x = images()
    out = net(x, reparameterize)
    shapes = {key: list(value.shape) for key, value in out.items()}
    assert shapes == {"features": [6, 256], "mu": [6, 16], "logvar": [6, 16], "z_inv": [6, 16], "z_var": [6, 16],
                      "reconstruction": [6, 256]}
    assert torch.allclose(out["z_inv"].norm(dim=1), torch.ones(6))
    assert torch.equal(out["features"], net.backbone.embed(x))
    net.eval()
    assert torch.allclose(extract_features(net, x, progress=False), net.features(x))
    assert DVML().embedding_dim == 64


@pytest.mark.parametrize("phase", [1, 2])
def test_phase_1_stops_the_decoder_gradient_into_the_embedding_and_phase_2_releases_it(phase):
    torch.manual_seed(0)
    net = DVML(embedding_dim=16)
    sample = functools.partial(reparameterize, generator=torch.Generator().manual_seed(0))
    out = net(images(), sample, phase=phase)
    F.mse_loss(out["reconstruction"], out["features"].detach()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.decoder.parameters())
    encoder = [net.mu.weight, net.logvar.weight, net.invariant.weight, net.backbone[0].weight]
    if phase == 1:
        assert all(p.grad is None for p in encoder)
    else:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder)


def test_dvml_loss_is_the_weighted_sum_of_its_terms():
    torch.manual_seed(0)
    net = DVML(embedding_dim=16)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    sample = functools.partial(reparameterize, generator=torch.Generator().manual_seed(0))
    out = net(images(8), sample, phase=2)
    lambdas = (0.5, 2.0, 0.3, 1.0)
    total, terms = dvml_loss(**out, labels=labels, lambdas=lambdas, margin=0.5)
    expected = {
        "kl": kl_divergence(out["mu"], out["logvar"]),
        "reconstruction": (out["reconstruction"] - out["features"]).square().mean(),
        "triplet_synthesized": semihard_triplet_loss(out["z_inv"] + out["z_var"], labels, 0.5),
        "triplet_invariant": semihard_triplet_loss(out["z_inv"], labels, 0.5),
    }
    assert terms.keys() == expected.keys()
    for key in expected:
        assert terms[key].item() == pytest.approx(expected[key].item(), rel=1e-6), key
    weighted = sum(w * expected[key] for w, key in zip(lambdas, expected))
    assert total.item() == pytest.approx(weighted.item(), rel=1e-6)
    default, _ = dvml_loss(**out, labels=labels, margin=0.5)
    assert default.item() == pytest.approx(sum(expected.values()).item(), rel=1e-6)


def test_dvml_loss_reconstruction_target_is_detached():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(6, 10, generator=g, requires_grad=True)
    reconstruction = torch.randn(6, 10, generator=g, requires_grad=True)
    z_inv = F.normalize(torch.randn(6, 4, generator=g), dim=1)
    mu, logvar, z_var = torch.randn(3, 6, 4, generator=g)
    _, terms = dvml_loss(features, mu, logvar, z_inv, z_var, reconstruction, torch.tensor([0, 0, 1, 1, 2, 2]))
    terms["reconstruction"].backward()
    assert features.grad is None and reconstruction.grad is not None


@pytest.mark.parametrize("name", GRADED)
def test_graded_functions_are_loop_free(name):
    assert loop_violations(inspect.getsource(lab5), name) == []


def _bad_calls():
    f = torch.randn(6, 4)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    out = {"features": torch.randn(6, 10), "mu": f, "logvar": f, "z_inv": F.normalize(f, dim=1), "z_var": f,
           "reconstruction": torch.randn(6, 10)}
    return [
        ("kl-shapes", lambda: kl_divergence(f, f[:, :3]), "mu and logvar must have the same shape"),
        ("kl-1d", lambda: kl_divergence(f[0], f[0]), r"mu must have shape \[N, D\]"),
        ("kl-int", lambda: kl_divergence(f.long(), f), "mu must be a float tensor"),
        ("kl-nan", lambda: kl_divergence(f, f.log()), "logvar contain NaN"),
        ("generator", lambda: reparameterize(f, f, generator=123), "generator must be a torch.Generator"),
        ("labels-length", lambda: semihard_triplets(f, y[:5]), r"labels must be an integer \[6\] tensor"),
        ("labels-float", lambda: semihard_triplet_loss(f, y.double()), r"labels must be an integer \[6\] tensor"),
        ("margin", lambda: semihard_triplets(f, y, margin=0.0), "margin must be positive"),
        ("features-3d", lambda: semihard_triplet_loss(f[None], y), r"features must have shape \[N, D\]"),
        ("lambdas-three", lambda: dvml_loss(**out, labels=y, lambdas=(1, 1, 1)), "lambdas must be four"),
        ("lambdas-negative", lambda: dvml_loss(**out, labels=y, lambdas=(1, -1, 1, 1)), "lambdas must be four"),
        ("reconstruction", lambda: dvml_loss(**{**out, "reconstruction": out["features"][:, :9]}, labels=y),
         "features and reconstruction must have the same shape"),
        ("z_var", lambda: dvml_loss(**{**out, "z_var": f[:5]}, labels=y), "z_inv and z_var must have the same shape"),
        ("dvml-labels", lambda: dvml_loss(**out, labels=y[:4]), r"labels must be an integer \[6\] tensor"),
        ("embedding_dim", lambda: DVML(embedding_dim=0), "embedding_dim must be a positive integer"),
        ("phase-3", lambda: DVML()(images(), reparameterize, phase=3), "phase must be 1"),
        ("phase-bool", lambda: DVML().decode(torch.randn(2, 64), phase=True), "phase must be 1"),
        ("images", lambda: DVML()(images()[:, 0], reparameterize), r"images of shape \[B, 1, H, W\]"),
        ("sample-missing", lambda: DVML()(images(), None), "sample must be a function"),
        ("sample-shape", lambda: DVML()(images(), lambda mu, logvar: mu[:, :2]), "must return a tensor of mu's shape"),
        ("decode-dim", lambda: DVML().decode(torch.randn(2, 16)), r"decoder expects an embedding of shape \[B, 64\]"),
    ]


@pytest.mark.parametrize("call, message", [c[1:] for c in _bad_calls()], ids=[c[0] for c in _bad_calls()])
def test_bad_inputs_raise_value_error_naming_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()
