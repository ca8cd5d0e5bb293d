"""Lab 2 reference: the triplet loss and triplet training."""

import os

import torch
from tqdm.auto import tqdm

from autograder.labs.lab1_retrieval.reference import distances
from labtools.data import DeviceLoader
from labtools.models import load_checkpoint, save_checkpoint


def triplet_loss(features, labels, alpha=0.5, num_anchors=10):
    """Total triplet hinge loss of the first `num_anchors` rows of a batch taken as anchors.

    features: [B, D] L2-normalized rows, labels: [B]. For each anchor a, sums
    max(d(a, p) - d(a, n) + alpha, 0) over every positive p (same label, p != a) and every
    negative n (other label) in the batch, d the squared Euclidean distance. Returns a 0-d
    tensor, the sum over anchors.
    """
    anchors = min(num_anchors, len(labels))
    dist = distances(features[:anchors], features)  # [A, B]
    same = labels[:anchors, None] == labels[None, :]  # [A, B]
    is_anchor = torch.arange(len(labels), device=labels.device)[None, :] == torch.arange(
        anchors, device=labels.device
    )[:, None]
    # a pair that is not a positive (negative) gets d(a, p) = -inf (d(a, n) = +inf): its hinges
    # are clamped to exactly 0 and pass no gradient, so no [A, B, B] mask is built or multiplied
    to_positive = dist.masked_fill(~same | is_anchor, -torch.inf)  # [A, B]
    to_negative = dist.masked_fill(same, torch.inf)  # [A, B]
    violation = (to_positive[:, :, None] - to_negative[:, None, :] + alpha).clamp_min(0.0)  # [A, P=B, N=B]
    return violation.sum()


def train_triplets(net, train_set, epochs=100, lr=0.01, batch_size=100, alpha=0.5,
                   checkpoint="triplet_net.pt", device=None, seed=0):
    """Train `net` with the triplet loss by SGD (momentum 0.9) on batches drawn without replacement.

    train_set: a TensorDataset of images [N, 1, 28, 28] and labels [N]. Prints the total
    triplet loss at the end of each epoch, saves the network, optimizer and history to
    `checkpoint` after every epoch, and resumes from `checkpoint` when it exists. Returns the
    history, a dict with "loss" (mean per batch) and "loss_total" (sum over the epoch) lists.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    history, done = {"loss": [], "loss_total": []}, 0
    if checkpoint is not None and os.path.exists(checkpoint):
        _, record = load_checkpoint(checkpoint, net, device=device)
        optimizer.load_state_dict(record["optimizer"])
        history, done = record["history"], record["epochs"]
        print(f"resuming from {checkpoint} after epoch {done}")
    images, labels = train_set.tensors
    loader = DeviceLoader(images, labels, batch_size=batch_size, device=device, seed=seed)
    loader.set_epoch(done)
    net.train()
    for epoch in range(done + 1, epochs + 1):
        total = 0.0
        for x, y in tqdm(loader, desc=f"epoch {epoch}/{epochs}", leave=False):
            loss = triplet_loss(net.features(x), y, alpha=alpha)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        history["loss_total"].append(total)
        history["loss"].append(total / len(loader))
        print(f"epoch {epoch}/{epochs}: total triplet loss {total:.4f}")
        if checkpoint is not None:
            save_checkpoint(checkpoint, net, dataset="MNIST", loss="triplet", seed=seed, epochs=epoch,
                            history=history, optimizer=optimizer)
    net.eval()
    return history
