"""Lab 3 reference: the Smooth-AP loss (Brown et al., ECCV 2020) and the lab's one training loop."""

import os

import torch
from tqdm.auto import tqdm

from labtools.data import BalancedBatchSampler, DeviceLoader
from labtools.models import load_checkpoint, save_checkpoint


def smooth_ap_loss(features, labels, tau=0.01):
    """Smooth-AP loss of a batch: the mean over queries of 1 - (smoothed average precision).

    features: [B, D] L2-normalized rows, labels: [B] integers, tau > 0 the sigmoid temperature.
    Every row q is a query ranked against the B - 1 other rows by cosine similarity
    s_j = <f_q, f_j> (the query itself is excluded). With P the positives of q (its label, q
    excluded), N the other rows, D_ij = s_j - s_i and G(x) = sigmoid(x / tau):

        AP_q = 1/|P| sum_{i in P} (1 + sum_{j in P, j != i} G(D_ij))
                                 / (1 + sum_{j in P u N, j != i} G(D_ij))

    Only the positives of each query need a rank: they are gathered into M columns, M the
    largest number of positives of a query (M = K - 1 for batches of K images per class), queries
    with fewer positives padded and masked. Tensors are [B, M, B], never [B, B, B].
    Returns a 0-d tensor: the mean of 1 - AP_q over the queries with at least one positive
    (0 when no query has one).
    """
    if not isinstance(features, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ValueError(f"features and labels must be tensors, got {type(features).__name__}, {type(labels).__name__}")
    if features.ndim != 2 or len(features) == 0 or not features.is_floating_point():
        raise ValueError(f"features must be a float [B, D] tensor, B >= 1, got {features.dtype} {list(features.shape)}")
    if labels.shape != features.shape[:1] or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer [{len(features)}] tensor, got {labels.dtype} {list(labels.shape)}")
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    index = torch.arange(len(labels), device=labels.device)
    sim = features @ features.T  # [B, B]: s[q, j] = <f_q, f_j>
    not_query = index[None, :] != index[:, None]  # [B, B]: j != q
    positive = (labels[:, None] == labels[None, :]) & not_query  # [B, B]: j in P of query q
    m = int(positive.sum(dim=1).max())
    # The indices of each query's positives, first in its row, padded with other rows to M columns:
    valid, pos_index = positive.to(sim.dtype).topk(m, dim=1)  # [B, M]: 1 for a positive, 0 for padding
    s_pos = sim.gather(1, pos_index)  # [B, M]: s_i of the positive i
    above = torch.sigmoid((sim[:, None, :] - s_pos[:, :, None]) / tau)  # [B, M, B]: G(D_ij) = G(s_j - s_i)
    others = not_query[:, None, :] & (index[None, None, :] != pos_index[:, :, None])  # [B, M, B]: j != q, j != i
    rank_all = 1 + (above * others).sum(dim=2)  # [B, M]: smoothed rank of i among all items
    rank_pos = 1 + (above * (others & positive[:, None, :])).sum(dim=2)  # [B, M]: ... among the positives
    count = valid.sum(dim=1)  # [B]: |P|
    ap = (valid * rank_pos / rank_all).sum(dim=1) / count.clamp_min(1)  # [B]
    has_positive = count > 0
    return ((1 - ap) * has_positive).sum() / has_positive.sum().clamp_min(1)


def train(net, train_set, loss_fn, epochs=100, lr=0.01, batch_size=100, samples_per_class=None, checkpoint=None,
          device=None, seed=0, val_set=None, loss_name="loss", dataset="FashionMNIST"):
    """Train `net` by SGD (momentum 0.9) on the batch loss `loss_fn(net, images, labels)`.

    loss_fn gets a batch of images [B, 1, 28, 28] and labels [B] on `device` and returns a 0-d
    tensor. train_set (and val_set): TensorDatasets of images [N, 1, 28, 28] and labels [N].
    Batches of `batch_size` are drawn without replacement, or with `samples_per_class` K
    class-balanced: batch_size // K classes x K images (labtools.data.BalancedBatchSampler,
    seeded by seed + epoch).
    Prints the total loss of each epoch, saves the network, optimizer and history to `checkpoint`
    after every epoch (as trained on `dataset` with `loss_name`) and resumes from it when it exists.
    Returns the history, per-epoch lists: "loss" (mean per batch), "loss_total" (sum over the
    epoch) and, with val_set, "val_accuracy" (the fraction of net(images).argmax(1) == labels).
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    history, done = {"loss": [], "loss_total": []}, 0
    if val_set is not None:
        history["val_accuracy"] = []
    if checkpoint is not None and os.path.exists(checkpoint):
        _, record = load_checkpoint(checkpoint, net, device=device)
        optimizer.load_state_dict(record["optimizer"])
        history, done = record["history"], record["epochs"]
        print(f"resuming from {checkpoint} after epoch {done}")
    images, labels = train_set.tensors
    loader = DeviceLoader(images, labels, batch_size=batch_size, device=device, seed=seed)  # the data on `device`
    loader.set_epoch(done)
    net.train()
    for epoch in range(done + 1, epochs + 1):
        if samples_per_class is None:
            batches, count = loader, len(loader)
        else:
            sampler = BalancedBatchSampler(labels, batch_size // samples_per_class, samples_per_class,
                                           seed=seed + epoch)
            index = torch.tensor(list(sampler), device=device)  # [batches, batch_size]
            batches, count = ((loader.images[b], loader.labels[b]) for b in index), len(index)
        total = 0.0
        for x, y in tqdm(batches, total=count, desc=f"epoch {epoch}/{epochs}", leave=False):
            loss = loss_fn(net, x, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        history["loss_total"].append(total)
        history["loss"].append(total / count)
        message = f"epoch {epoch}/{epochs}: total {loss_name} loss {total:.4f}"
        if val_set is not None:
            net.eval()
            with torch.no_grad():
                predicted = torch.cat([net(x.to(device)).argmax(1).cpu() for x in val_set.tensors[0].split(1000)])
            net.train()
            history["val_accuracy"].append((predicted == val_set.tensors[1]).float().mean().item())
            message += f", validation accuracy {history['val_accuracy'][-1]:.4f}"
        print(message)
        if checkpoint is not None:
            save_checkpoint(checkpoint, net, dataset=dataset, loss=loss_name, seed=seed, epochs=epoch,
                            history=history, optimizer=optimizer)
    net.eval()
    return history
