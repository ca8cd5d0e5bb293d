# Source of the Lab 2 notebook (lab2_triplet). Build it with:
#     python -m autograder.notebooks build lab2_triplet
# The [solution] and [tests] cells are those of the lab's spec, labtools/labs/lab2_triplet.py (with
# their points and the lab whose reference holds each solution): the solutions are generated from
# autograder/labs/lab2_triplet/reference.py (and Lab 1's for the functions pasted from it); see
# autograder/notebooks.py.

# %% [markdown]
# # Lab 2: Metric learning with the triplet loss
#
# In Lab 1 the embedding was a by-product of classification. Here we train the **same network
# architecture** so that its embedding directly serves retrieval. For an anchor image $a$, a
# positive $p$ (same class) and a negative $n$ (another class), we want the positive closer than
# the negative by a margin $\alpha \ge 0$:
# $$ d(f(a), f(p)) \le d(f(a), f(n)) - \alpha \quad \forall p, n, $$
# with $d(x, y) = \|x - y\|_2^2$ on the normalized embeddings. The **triplet loss** of an anchor is
# the total violation of these constraints,
# $$ l(a) = \sum_{p, n} \max\big(d(f(a), f(p)) - d(f(a), f(n)) + \alpha,\ 0\big), $$
# and we choose $\alpha \in (0, 2)$, by default $0.5$.
#
# In this lab you will
#
# 1. implement `triplet_loss` for a mini-batch (the first 10 images of the batch are the anchors;
#    no loops except possibly over the anchors),
# 2. implement `train_triplets`, SGD on batches drawn at random without replacement, and train
#    the network for 100 epochs (use a GPU if you have one),
# 3. evaluate the trained network as in Lab 1 and compare it with the classification network.
#
# **Report:** the optimization settings, the plot of the training progress, the retrieval examples
# and mAP of the trained network, its precision-recall curve together with the classification
# network's, and the comparison of the t-SNE embeddings of both networks.

# %% [locked] setup
%matplotlib inline
import json
import os
from pathlib import Path

import torch
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from labtools import neighbors, tsne, viz
from labtools.data import DeviceLoader, fixed_test_set, train_val_split
from labtools.models import ConvNet, extract_features, load_checkpoint, save_checkpoint
from labtools.paths import models_dir
from labtools.runtime import fast_mode, pick_device

# %% [locked] load
test_set = fixed_test_set("MNIST")
images, labels = test_set.tensors
train_set, val_set = train_val_split("MNIST")
classifier, _ = load_checkpoint(models_dir() / "mnist_classifier.pt")

# %%
# NBVAL_CHECK_OUTPUT
print("test:", tuple(images.shape), "train:", tuple(train_set.tensors[0].shape), "validation:", len(val_set))

# %% [markdown]
# ## Your functions from Lab 1
#
# Paste your Lab 1 implementations of `distances`, `evaluate_AP` and `evaluate_mAP` into the three
# cells below (replace the whole `# YOUR CODE HERE` part). They are not graded again here, but the
# triplet loss and the evaluation below use them.

# %% [solution] distances

# %% [solution] evaluate_AP

# %% [solution] evaluate_mAP

# %% [markdown]
# ## 1. Triplet loss
#
# Implement `triplet_loss(features, labels, alpha=0.5, num_anchors=10)`. `features` `[B, D]` are
# the normalized embeddings of a batch and `labels` `[B]` their classes; the first `num_anchors`
# entries of the batch are the anchors. For each anchor $a$, sum the hinge
# $\max(d(a, p) - d(a, n) + \alpha, 0)$ over **all** valid pairs in the batch: every positive $p$
# (same label, not the anchor itself) and every negative $n$ (another label). Return the total
# over the anchors as a 0-d tensor.
#
# Avoid loops except, if you wish, the one over the anchors. *Hint:* compute the distances of the
# anchors to the whole batch with your `distances`, then form all (positive, negative)
# combinations by broadcasting a `[A, B, 1]` tensor against a `[A, 1, B]` one and mask the invalid
# ones.

# %% [solution] triplet_loss

# %% [tests] triplet_loss
from labtools.checks import run_public_checks

run_public_checks("lab2_triplet", "triplet_loss", triplet_loss);

# %% [markdown]
# A small example to check by hand: five points on the unit circle, two anchors.

# %%
# NBVAL_CHECK_OUTPUT
toy = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]]), dim=1)
toy_labels = torch.tensor([0, 0, 1, 1, 0])
print(f"loss, 2 anchors, alpha 0.5: {float(triplet_loss(toy, toy_labels, alpha=0.5, num_anchors=2)):.4f}")
print(f"loss, 2 anchors, alpha 0:   {float(triplet_loss(toy, toy_labels, alpha=0.0, num_anchors=2)):.4f}")

# %% [markdown]
# ## 2. Training
#
# Implement `train_triplets(net, train_set, epochs=100, lr=0.01, batch_size=100, alpha=0.5,
# checkpoint="triplet_net.pt", device=None, seed=0)`:
#
# * SGD with learning rate `lr` (and momentum, e.g. 0.9) on batches of `batch_size` images drawn
#   at random **without replacement** from `train_set` (a `TensorDataset` of images and labels),
#   a new order every epoch, seeded by `seed`; the loss of a batch is `triplet_loss` of
#   `net.features(images)` with margin `alpha`;
# * train on `device` (default: the GPU when there is one, else the CPU);
# * at the end of each epoch, print the total triplet loss of the epoch;
# * save the network and the training history to `checkpoint` (after every epoch, so that an
#   interrupted run keeps its progress) with `labtools.models.save_checkpoint(checkpoint, net,
#   dataset="MNIST", loss="triplet", seed=seed, epochs=epoch, history=history)`;
# * return the history, a dict of per-epoch lists with at least `"loss"` (the mean loss per batch).

# %% [solution] train_triplets

# %% [tests] train_triplets
from labtools.checks import run_public_checks

run_public_checks("lab2_triplet", "train_triplets", train_triplets);

# %% [markdown]
# Now train the network: 100 epochs on the 54,000 training images, saved to `triplet_net.pt`
# next to this notebook (submit that file with the notebook). On a GPU this takes a few minutes.
#
# `SEED` seeds the initial weights and the order of the batches. The course's own network was
# trained with seed 0; yours starts from another seed, so that it is your own run: the grader
# refuses a `triplet_net.pt` with the course network's weights.
#
# When the notebook runs in *fast mode* (under the autograder, or with `LABTOOLS_FAST=1`) the cell
# trains a small stand-in instead, 2 epochs on 300 images saved to `triplet_net.fast.pt`; it never
# touches your `triplet_net.pt`.

# %%
SEED = 1  # not the course network's seed 0
device = pick_device()
torch.manual_seed(SEED)
triplet_net = ConvNet()
if fast_mode():
    checkpoint = "triplet_net.fast.pt"
    Path(checkpoint).unlink(missing_ok=True)  # a fast run always starts afresh
    subset = TensorDataset(*(tensor[:300] for tensor in train_set.tensors))
    history = train_triplets(triplet_net, subset, epochs=2, checkpoint=checkpoint, device=device, seed=SEED)
else:
    checkpoint = "triplet_net.pt"
    history = train_triplets(triplet_net, train_set, epochs=100, checkpoint=checkpoint, device=device, seed=SEED)

# %% [tests] checkpoint {"tags": ["nbval-skip"]}
from labtools.checks import run_public_checks

run_public_checks("lab2_triplet", "checkpoint", "triplet_net.pt");

# %% [markdown]
# **Report:** in the cell below, give the optimization settings you used (optimizer, learning
# rate, momentum, batch size, margin, number of anchors, epochs, device and training time).

# %% [markdown] {"nbgrader": "answer", "id": "report_settings"}
# *Model answer (instructors only):* SGD with learning rate 0.01 and momentum 0.9, batches of 100
# images drawn without replacement, margin $\alpha = 0.5$, the first 10 images of each batch as
# anchors, 100 epochs over the 54,000 training images, seed 1 (the course's own network: seed 0).

# %% [markdown]
# ## 3. Evaluation
#
# The trained network, loaded back from its checkpoint, and its training progress from the
# history saved with it.

# %%
triplet_net, triplet_record = load_checkpoint(checkpoint)
print(f"{checkpoint}: {len(triplet_record['history']['loss'])} epochs")
viz.training_curves(triplet_record["history"])

# %% [markdown]
# **Report:** in the cell below, include the plot of the training progress and comment on it.

# %% [markdown] {"nbgrader": "answer", "id": "report_training"}
# *Model answer (instructors only):* the loss falls steeply in the first epochs and then slowly;
# it does not reach zero, since with 10 anchors per batch some triplets keep violating the margin.

# %% [markdown]
# Retrieval with the same queries as in Lab 1: the classification network (top) and the triplet
# network (bottom).

# %%
QUERY_IDS = [0, 1, 2, 3, 4, 5, 6, 7]
K = 50
query_ids = torch.tensor(QUERY_IDS)


def retrieve(net):
    """Indices [Q, K] of the K nearest test images of each query (itself excluded) by `net`'s features."""
    features = extract_features(net, images, progress=False)
    return neighbors.nearest(features[query_ids], features, K, exclude=query_ids)[1]


nearest = {"classification network": retrieve(classifier), "triplet network": retrieve(triplet_net)}
correct = {name: (labels[found] == labels[query_ids, None]).sum(dim=1) for name, found in nearest.items()}
for name, counts in correct.items():
    print(f"{name}: correct among the {K} retrieved: {counts.tolist()}")

# %%
viz.retrieval_grid(images[query_ids], images[nearest["classification network"]], labels[query_ids],
                   labels[nearest["classification network"]], query_ids=QUERY_IDS)

# %%
viz.retrieval_grid(images[query_ids], images[nearest["triplet network"]], labels[query_ids],
                   labels[nearest["triplet network"]], query_ids=QUERY_IDS)

# %%
viz.correct_retrievals_bars(correct, query_ids=QUERY_IDS, k=K)

# %% [markdown]
# Mean average precision over the first 100 queries of the fixed test set, with your
# `evaluate_mAP`, and the precision-recall curves of both networks in one plot.

# %%
scores = {"classification network": evaluate_mAP(classifier, test_set, num_queries=100),
          "triplet network": evaluate_mAP(triplet_net, test_set, num_queries=100)}

# %%
# NBVAL_CHECK_OUTPUT
print(f"classification network: mAP = {scores['classification network'][0]:.3f}")

# %%
print(f"triplet network: mAP = {scores['triplet network'][0]:.3f}")
viz.pr_curves({name: (recall, precision, mAP) for name, (mAP, precision, recall) in scores.items()},
              title="MNIST, fixed test set, 100 queries")

# %% [markdown]
# For comparison, the mAP of the course's reference triplet network (trained with the same
# settings: 100 epochs, $\alpha = 0.5$, 10 anchors per batch of 100), read from its card.

# %% [locked] reference_map
# NBVAL_CHECK_OUTPUT
card = json.loads((models_dir() / "mnist_triplet.json").read_text())
print(f"reference mAP of the shipped triplet network: {card['scores']['map_100']:.3f}")

# %% [markdown]
# t-SNE maps of the embeddings of both networks (the first 1,000 test images; 300 in fast mode).

# %%
tsne.tsne_side_by_side({"classification network": classifier, "triplet network": triplet_net}, test_set,
                       num_images=300 if fast_mode() else 1000, seed=0)

# %% [markdown]
# **Report:** in the cell below, compare the two networks: the retrieved images, the mAP, the
# precision-recall curves and the t-SNE maps.

# %% [markdown] {"nbgrader": "answer", "id": "report_comparison"}
# *Model answer (instructors only):* the triplet network retrieves almost only images of the
# query's class, its mAP is close to the reference (the original lab quotes 0.98, against about
# 0.74 for the classification network), and its precision stays near 1 up to a high recall. In the
# t-SNE maps its classes form compact, well separated clusters, whereas the classification
# network's clusters are elongated and touch each other.
