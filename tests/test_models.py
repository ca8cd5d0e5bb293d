"""labtools.models: the ConvNet, feature extraction and checkpoints."""

import pytest
import torch
from torch import nn

from labtools.data import digits_dataset
from labtools.models import (
    CheckpointError,
    ConvNet,
    EmbeddingNet,
    extract_features,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)


def test_convnet_is_the_labs_architecture():
    net = ConvNet()
    kinds = [type(m) for m in net]
    assert kinds == [nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Conv2d, nn.ReLU, nn.MaxPool2d,
                     nn.Conv2d, nn.ReLU, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear]
    assert [m.out_channels for m in net if isinstance(m, nn.Conv2d)] == [32, 32, 64]
    assert net[-1].in_features == 256 and net[-1].out_features == 10
    x = torch.rand(4, 1, 28, 28)
    assert net(x).shape == (4, 10)
    features = net.features(x)
    assert features.shape == (4, 256)
    assert torch.allclose(features.norm(dim=1), torch.ones(4), atol=1e-6)


@pytest.mark.parametrize("precision", [torch.float32, torch.bfloat16])
def test_convnet_pools_before_relu_with_the_same_outputs_and_gradients(precision):
    """ConvNet computes each ReLU after the max pool that follows it: the layers' own order gives the same
    numbers, bit for bit, forward and backward (dead windows included: the first conv's bias is lowered)."""
    torch.manual_seed(0)
    net = ConvNet()
    with torch.no_grad():
        net[0].bias.sub_(0.3)
    x = torch.rand(8, 1, 28, 28)
    results = []
    for run in (net, nn.Sequential(*net)):  # the commuted forward, then the layers in their order
        net.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == torch.bfloat16):
            out = run(x)
        out.float().square().sum().backward()
        results.append((out, [p.grad.clone() for p in net.parameters()]))
    (out, grads), (plain_out, plain_grads) = results
    assert (net[2](net[0](x)) <= 0).any()  # some pooling windows have no positive value
    assert torch.equal(out, plain_out)
    assert all(torch.equal(g, h) for g, h in zip(grads, plain_grads))
    assert torch.equal(net.embed(x), nn.Sequential(*list(net)[:-1])(x))


@pytest.mark.parametrize("bad, error, match", [
    (torch.rand(4, 28, 28), ValueError, r"\[B, 1, H, W\], got \(4, 28, 28\)"),
    (torch.rand(4, 3, 28, 28), ValueError, r"got \(4, 3, 28, 28\)"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), TypeError, "floating-point"),
    ([[0.0]], TypeError, "got list"),
])
def test_convnet_rejects_bad_images(bad, error, match):
    with pytest.raises(error, match=match):
        ConvNet().features(bad)


def test_extract_features_batches_and_restores_mode():
    net = ConvNet().train()
    images = digits_dataset().tensors[0][:250]
    features = extract_features(net, images, batch_size=64, progress=False)
    assert features.shape == (250, 256)
    assert net.training
    net.eval()
    with torch.no_grad():
        assert torch.allclose(features, net.features(images), atol=1e-5)
    for batch_size in (0, 2.5):
        with pytest.raises(ValueError, match=f"batch_size must be a positive integer, got {batch_size!r}"):
            extract_features(net, images, batch_size=batch_size, progress=False)


def test_checkpoint_round_trip_keeps_weights_and_metadata(tmp_path):
    torch.manual_seed(0)
    net = ConvNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.rand(2, 1, 28, 28)).sum().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "net.pt", net, dataset="MNIST", loss="triplet", seed=3, epochs=7,
                           history={"loss": [3.0, 2.0]}, scores={"map_100": 0.5}, optimizer=optimizer)
    assert not list(tmp_path.glob("*.tmp"))
    raw = torch.load(path, weights_only=True)  # the documented way to read it
    assert raw["architecture"] == "ConvNet" and raw["epochs"] == 7
    loaded, record = load_checkpoint(path)
    assert not loaded.training
    for a, b in zip(net.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert record["history"] == {"loss": [3.0, 2.0]} and record["scores"] == {"map_100": 0.5}
    assert record["dataset"] == "MNIST" and record["loss"] == "triplet" and record["seed"] == 3
    assert record["optimizer"]["state"]


def test_bare_state_dict_loads(tmp_path):
    net = ConvNet()
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    loaded, record = load_checkpoint(tmp_path / "bare.pt")
    assert torch.equal(loaded[0].weight, net[0].weight) and record["architecture"] is None


def test_other_architecture_is_refused_with_what_differs(tmp_path):
    other = nn.Sequential(nn.Conv2d(1, 16, 3), nn.Flatten(), nn.Linear(16 * 26 * 26, 10))
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"does not fit ConvNet: missing parameters .*'3.weight'.*"
                                              r"shape mismatches .*0.weight: file \(16, 1, 3, 3\) vs network \(32, 1, 3, 3\)"):
        load_checkpoint(tmp_path / "other.pt")


def test_wrong_number_of_classes_is_refused(tmp_path):
    save_checkpoint(tmp_path / "net.pt", ConvNet(num_classes=5), dataset="MNIST", loss="cross_entropy")
    assert load_checkpoint(tmp_path / "net.pt")[0].num_classes == 5
    with pytest.raises(CheckpointError, match=r"10.weight: file \(5, 256\) vs network \(10, 256\)"):
        load_checkpoint(tmp_path / "net.pt", ConvNet(num_classes=10))


def test_foreign_and_corrupt_files_are_refused(tmp_path):
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(tmp_path / "corrupt.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a metric-lab checkpoint"):
        read_checkpoint(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        read_checkpoint(tmp_path / "missing.pt")
    record = read_checkpoint(save_checkpoint(tmp_path / "x.pt", ConvNet(), dataset="MNIST", loss="ce"))
    record["architecture"] = "ResNet"
    torch.save(record, tmp_path / "resnet.pt")
    with pytest.raises(CheckpointError, match="holds a ResNet, which is none of ConvNet, EmbeddingNet, DVML"):
        load_checkpoint(tmp_path / "resnet.pt")
    with pytest.raises(CheckpointError, match="holds a ResNet, not a ConvNet"):
        load_checkpoint(tmp_path / "resnet.pt", ConvNet())


@pytest.mark.parametrize("config", [dict(num_classes=8), dict(layer_norm=True), dict(sub_centers=3),
                                    dict(sub_centers=0)])
def test_an_embedding_net_comes_back_as_it_was_saved(tmp_path, config):
    torch.manual_seed(0)
    net = EmbeddingNet(**config)
    path = save_checkpoint(tmp_path / "e.pt", net, dataset="FashionMNIST", loss="arcface")
    loaded, record = load_checkpoint(path)
    assert isinstance(loaded, EmbeddingNet) and record["config"] == net.config
    assert loaded.state_dict().keys() == net.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(loaded.features(x), net.eval().features(x))
    with pytest.raises(CheckpointError, match="holds an EmbeddingNet, not a ConvNet"):
        load_checkpoint(path, ConvNet())


def test_embedding_net_features_and_class_vectors():
    x = torch.rand(5, 1, 28, 28)
    plain, normed = EmbeddingNet(sub_centers=0), EmbeddingNet(layer_norm=True, sub_centers=3)
    normed.backbone.load_state_dict(plain.backbone.state_dict())
    normed.embedding.load_state_dict(plain.embedding.state_dict())
    assert plain.weight is None and normed.weight.shape == (10, 3, 256)
    assert EmbeddingNet(num_classes=8).weight.shape == (8, 256)
    embed = plain.backbone.embed(x)
    assert torch.allclose(plain.features(x), nn.functional.normalize(plain.embedding(embed), dim=1))
    standardized = (embed - embed.mean(dim=1, keepdim=True)) / embed.var(dim=1, unbiased=False, keepdim=True).add(1e-5).sqrt()
    assert torch.allclose(normed.features(x), nn.functional.normalize(plain.embedding(standardized), dim=1), atol=1e-5)
    with torch.no_grad():
        plain.backbone[6].bias.fill_(-100.0)  # the last conv: every ReLU dead, embed all zero
    assert plain.backbone.embed(x).abs().sum() == 0
    assert torch.allclose(plain.features(x).norm(dim=1), torch.ones(5))  # the bias still gives a direction
    with pytest.raises(ValueError, match="sub_centers must be an integer >= 0"):
        EmbeddingNet(sub_centers=-1)


def test_a_checkpoint_of_an_unknown_configuration_is_refused(tmp_path):
    record = read_checkpoint(save_checkpoint(tmp_path / "e.pt", EmbeddingNet(), dataset="MNIST", loss="arcface"))
    record["config"]["heads"] = 2
    torch.save(record, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="holds an EmbeddingNet of an unknown configuration"):
        load_checkpoint(tmp_path / "odd.pt")


def test_a_checkpoint_that_unpacks_past_the_limit_is_refused_before_loading(tmp_path):
    """torch.load inflates compressed zip members: a few kB could fill the memory of the reader."""
    import zipfile

    from labtools.labs.lab2_triplet import MAX_CHECKPOINT_BYTES, submitted_checkpoint
    from labtools.models import CheckpointTooLarge, read_checkpoint

    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(MAX_CHECKPOINT_BYTES // 4 + 1024)}, plain)
    bomb = tmp_path / "triplet_net.pt"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            target.writestr(member.filename, source.read(member))
    assert bomb.stat().st_size < 200_000  # zeros compress to almost nothing
    assert read_checkpoint(bomb)["state_dict"]["weight"].numel() > 0  # what the limit prevents
    with pytest.raises(CheckpointTooLarge, match="more than the"):
        read_checkpoint(bomb, max_bytes=MAX_CHECKPOINT_BYTES)
    net, record, message = submitted_checkpoint(bomb)
    assert net is None and "triplet_net.pt" in message and str(tmp_path) not in message
