# Source of the Lab 3 notebook (lab3_smoothap). Build it with:
#     python -m autograder.notebooks build lab3_smoothap
# The [solution] and [tests] cells are those of the lab's spec, labtools/labs/lab3_smoothap.py (with
# their points and the lab whose reference holds each solution): the solutions are generated from
# autograder/labs/lab3_smoothap/reference.py (and Labs 1 and 2's for the functions pasted from them);
# see autograder/notebooks.py.

# %% [markdown]
# # Lab 3: Cross-entropy, triplet and Smooth-AP on Fashion-MNIST
#
# Labs 1 and 2 compared an embedding learned for classification with one learned by the triplet
# loss. Here we add a loss that optimizes the retrieval measure itself, and repeat the comparison
# on a harder dataset: **Fashion-MNIST**, 28x28 greyscale images of ten kinds of clothing, with
# the same ConvNet as before.
#
# The lab follows a published student report on this very study. It trained one network per loss
# (cross-entropy, triplet, Smooth-AP) for 100 epochs by SGD (learning rate 0.01, momentum 0.9) on
# a 54,000 / 6,000 split of the training images into training and validation sets, and measured
# on a test set of 1,000 images (100 per class) an mAP over 100 queries of **0.61** for
# cross-entropy, **0.79** for the triplet loss and **0.77** for Smooth-AP.
#
# **Average precision** ranks every item by its similarity to the query and is not
# differentiable: a rank changes in jumps. **Smooth-AP** (Brown et al., *Smooth-AP: Smoothing the
# Path Towards Large-Scale Image Retrieval*, ECCV 2020) replaces the step function that counts
# who is ranked above whom by a sigmoid, which makes AP a smooth function of the embeddings that
# SGD can maximize directly.
#
# In this lab you will
#
# 1. implement `smooth_ap_loss` for a mini-batch, **without loops** (graded),
# 2. write one training loop `train` for all three losses and train the three networks (use a
#    GPU if you have one),
# 3. evaluate the course's trained networks: mAP, precision-recall curves, retrieval examples and
#    t-SNE maps, and compare them with the report.
#
# **Report:** the optimization settings, the training curves and what validation accuracy says
# about each network, the mAP table with the precision-recall curves, and the retrieval examples
# with the t-SNE maps. Write the answers in the cells marked *YOUR ANSWER HERE*.

# %% [locked] setup
%matplotlib inline
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from IPython.display import display
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from labtools import neighbors, tsne, viz
from labtools.data import BalancedBatchSampler, DeviceLoader, fixed_test_set, train_val_split
from labtools.models import ConvNet, extract_features, load_checkpoint, save_checkpoint
from labtools.paths import models_dir
from labtools.runtime import fast_mode, pick_device

# %% [markdown]
# ## Data
#
# The fixed test set holds the first 100 test images of each class in a seeded random order (the
# same for everyone, as in Labs 1 and 2); the training images are split into 54,000 for training
# and 6,000 for validation, as in the report.

# %% [locked] load
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
test_set = fixed_test_set("FashionMNIST")
images, labels = test_set.tensors
train_set, val_set = train_val_split("FashionMNIST")

# %%
# NBVAL_CHECK_OUTPUT
print("test:", tuple(images.shape), "train:", tuple(train_set.tensors[0].shape), "validation:", len(val_set))
print("test images per class:", torch.bincount(labels).tolist())

# %%
viz.show_images(images[:20], [CLASSES[c] for c in labels[:20]])

# %% [markdown]
# ## Your functions from Labs 1 and 2
#
# Paste your implementations of `distances`, `evaluate_AP` and `evaluate_mAP` (Lab 1) and
# `triplet_loss` (Lab 2) into the four cells below (replace the whole `# YOUR CODE HERE` part).
# They are not graded again here, but the training and the evaluation below use them.

# %% [solution] distances

# %% [solution] evaluate_AP

# %% [solution] evaluate_mAP

# %% [solution] triplet_loss

# %% [markdown]
# ## 1. Smooth-AP
#
# Take every row $q$ of a batch as a query and rank the other rows by their cosine similarity
# $s_j = \langle f_q, f_j \rangle$ to it (the rows are normalized). Let $P$ be the positives of
# $q$ (the rows with its label, **$q$ itself excluded**) and $N$ the negatives (the rows with
# another label). The rank of a positive $i$ among all items is one plus the number of items
# ranked above it, $1 + \sum_{j \ne i} \mathbb{1}[s_j > s_i]$, and its rank among the positives
# is the same sum over $j \in P$ only, so
# $$ \mathrm{AP}_q = \frac{1}{|P|} \sum_{i \in P}
#    \frac{1 + \sum_{j \in P, j \ne i} \mathbb{1}[D_{ij} > 0]}
#         {1 + \sum_{j \in P, j \ne i} \mathbb{1}[D_{ij} > 0] + \sum_{j \in N} \mathbb{1}[D_{ij} > 0]},
#    \qquad D_{ij} = s_j - s_i. $$
# Smooth-AP replaces each indicator $\mathbb{1}[D_{ij} > 0]$ by $G(D_{ij})$ with the sigmoid
# $G(x) = 1 / (1 + e^{-x / \tau})$ of temperature $\tau > 0$: the smaller $\tau$, the closer the
# sigmoid to the step and the smoothed AP to the true one, but the fewer pairs get a useful
# gradient. The loss of the batch is the mean over the queries of $1 - \mathrm{AP}_q$.
#
# Implement `smooth_ap_loss(features, labels, tau=0.01)`: `features` `[B, D]` are the normalized
# embeddings of a batch and `labels` `[B]` their classes; return a 0-d tensor, the mean of
# $1 - \mathrm{AP}_q$ over the queries that have at least one positive. The query itself is
# never one of its own items: it is neither a positive nor a negative.
#
# **No Python loops**, and mind the memory: the official implementation builds the tensor of all
# $G(D_{ij})$ of all queries, $B \times B \times B$ numbers. Only the positives $i$ need a rank,
# so with $m$ images per class in the batch, a `[B, m, B]` tensor is enough. The checks measure
# the memory your function and its backward pass allocate at batches of 128 and 256 (4 images
# per class) and expect it to grow as $B^2 m$, not as $B^3$. Every tensor counts, also those
# that `torch.func.vmap` makes: a `[B, B]` tensor per query, vmapped over the queries, is a
# `[B, B, B]` tensor in memory. *Hint:* collect the indices of each query's positives into a
# `[B, m - 1]` tensor (e.g. with `topk` on the mask of positives), `gather` their similarities,
# and broadcast them against all similarities of the query.

# %% [solution] smooth_ap_loss

# %% [tests] smooth_ap_loss
from labtools.checks import run_public_checks

run_public_checks("lab3_smoothap", "smooth_ap_loss", smooth_ap_loss);

# %% [markdown]
# A small example to check by hand: five points on the unit circle, at the angles 0, 25, 100,
# 180 and 65 degrees, of the classes 0, 0, 1, 1, 0. The exact APs of the five queries are 1, 1,
# 1/3, 1 and 7/12 (the negative at 100 degrees is the nearest item of the point at 65), so
# $1 - \mathrm{mAP} = 13/60 \approx 0.2167$: the loss approaches it as $\tau$ shrinks. The second
# set ranks every positive above every negative, which gives a loss of 0 unless $\tau$ is large.

# %%
# NBVAL_CHECK_OUTPUT
def on_circle(degrees):
    """Unit vectors [N, 2] at the given angles in degrees."""
    angles = torch.deg2rad(torch.tensor(degrees))
    return torch.stack([angles.cos(), angles.sin()], dim=1)


toy, toy_labels = on_circle([0.0, 25.0, 100.0, 180.0, 65.0]), torch.tensor([0, 0, 1, 1, 0])
perfect, perfect_labels = on_circle([0.0, 20.0, 50.0, 180.0, 210.0]), torch.tensor([0, 0, 0, 1, 1])
for tau in (0.01, 0.1, 1.0):
    print(f"tau {tau:<4}: loss {float(smooth_ap_loss(toy, toy_labels, tau=tau)):.4f}, "
          f"perfect ranking {float(smooth_ap_loss(perfect, perfect_labels, tau=tau)):.4f}")

# %% [markdown]
# ## 2. One training loop for three losses
#
# The three networks differ only in the loss of a batch, so one loop trains them all. Write
# `train(net, train_set, loss_fn, epochs=100, lr=0.01, batch_size=100, samples_per_class=None,
# checkpoint=None, device=None, seed=0, val_set=None, loss_name="loss", dataset="FashionMNIST")`,
# a generalization of your Lab 2 `train_triplets` (it is not graded):
#
# * `loss_fn(net, images, labels)` returns the loss of a batch, e.g.
#   `lambda net, x, y: F.cross_entropy(net(x), y)`;
# * SGD with learning rate `lr` and momentum 0.9 on `device` (default: the GPU when there is one);
# * batches of `batch_size` images drawn at random without replacement, a new order every epoch
#   seeded by `seed` (`labtools.data.DeviceLoader` does that), or, with `samples_per_class` $K$,
#   **class-balanced** batches of `batch_size // K` classes with $K$ images each, drawn in epoch
#   `e` by `labtools.data.BalancedBatchSampler(labels, batch_size // K, K, seed=seed + e)`;
# * at the end of each epoch, print its total loss and, when `val_set` is given, the validation
#   accuracy of `net(images).argmax(1)`;
# * after every epoch, save the network, the optimizer and the history to `checkpoint` with
#   `labtools.models.save_checkpoint(..., dataset=dataset, loss=loss_name, ..., optimizer=optimizer)`,
#   and resume from `checkpoint` when it exists;
# * return the history: per-epoch lists `"loss"` (mean per batch), `"loss_total"` and, with
#   `val_set`, `"val_accuracy"`.

# %% [solution] train

# %% [markdown]
# Now train the three networks with that one loop, 100 epochs each, saved next to this notebook
# to `fashion_cross_entropy.pt`, `fashion_triplet.pt` and `fashion_smooth_ap.pt` (an interrupted
# run resumes where it stopped when you run the cell again). Only the loss and what it needs
# change:
#
# * **cross-entropy** on the class scores `net(x)`, with batches drawn uniformly;
# * **triplet** (your Lab 2 loss, margin 0.5) and **Smooth-AP** ($\tau = 0.01$) on the embedding
#   `net.features(x)`, with class-balanced batches of 10 classes x 10 images, so that every image
#   has 9 positives in its batch. Every row of the batch is an anchor of the triplet loss (the
#   rows are grouped by class, so the first 10 would all be of one class);
# * the learning rate is 0.01 as in the report, except for the triplet loss: its sum over 100
#   anchors is ten times the Lab 2 loss (10 anchors), so it gets a ten times smaller rate, 0.001.
#
# On a GPU this takes some minutes per network; on a CPU, hours. The validation accuracy of
# every network is recorded after every epoch. In *fast mode* (under the autograder, or with
# `LABTOOLS_FAST=1`) the cell trains small stand-ins instead, 2 epochs on 500 images (validated
# on 500), saved to `fashion_<loss>.fast.pt`; it never touches your full runs.

# %%
device = pick_device()
RUNS = {  # loss name: (batch loss, learning rate, images per class in a batch or None for uniform batches)
    "cross_entropy": (lambda net, x, y: F.cross_entropy(net(x), y), 0.01, None),
    "triplet": (lambda net, x, y: triplet_loss(net.features(x), y, num_anchors=len(y)), 0.001, 10),
    "smooth_ap": (lambda net, x, y: smooth_ap_loss(net.features(x), y, tau=0.01), 0.01, 10),
}
if fast_mode():
    epochs, suffix = 2, ".fast.pt"
    training, validation = (TensorDataset(*(t[:500] for t in data.tensors)) for data in (train_set, val_set))
else:
    epochs, suffix, training, validation = 100, ".pt", train_set, val_set
nets, histories = {}, {}
for name, (loss_fn, lr, per_class) in RUNS.items():
    checkpoint = f"fashion_{name}{suffix}"
    if fast_mode():
        Path(checkpoint).unlink(missing_ok=True)  # a fast run always starts afresh
    print(f"--- {name} -> {checkpoint}")
    torch.manual_seed(0)
    nets[name] = ConvNet()
    histories[name] = train(nets[name], training, loss_fn, epochs=epochs, lr=lr, samples_per_class=per_class,
                            checkpoint=checkpoint, device=device, val_set=validation, loss_name=name)

# %% [markdown]
# The training curves. The three losses live on very different scales (the triplet loss sums
# thousands of hinges per batch, Smooth-AP lies between 0 and 1), so each curve is divided by its
# value in the first epoch.

# %%
def relative_loss(history):
    """The curves of one history: its "loss" [E] divided by the first epoch's, and its "val_accuracy" [E]."""
    return {"loss": [value / history["loss"][0] for value in history["loss"]], "val_accuracy": history["val_accuracy"]}


viz.training_curves({name: relative_loss(history) for name, history in histories.items()})

# %% [markdown]
# **Report:** in the cell below, give the optimization settings you used (optimizer, learning
# rates, momentum, batches, margin, anchors, $\tau$, epochs, device and training time).

# %% [markdown] {"nbgrader": "answer", "id": "report_settings"}
# *Model answer (instructors only):* SGD with momentum 0.9, 100 epochs over the 54,000 training
# images, batches of 100, seed 0. Cross-entropy: learning rate 0.01, batches drawn uniformly.
# Triplet: margin 0.5, every row an anchor, learning rate 0.001; Smooth-AP: $\tau = 0.01$,
# learning rate 0.01; both on class-balanced batches of 10 classes x 10 images.

# %% [markdown]
# ## 3. Evaluation
#
# First, your three networks as trained above (in fast mode these are the stand-ins, far from
# trained), by mAP over the first 100 queries of the fixed test set with your `evaluate_mAP`.

# %%
for name, net in nets.items():
    print(f"{name}: mAP = {evaluate_mAP(net, test_set, num_queries=100)[0]:.3f}")

# %% [markdown]
# The rest of the evaluation uses the course's trained networks, shipped in `models/` with a JSON
# card each, so that everyone looks at the same figures. They were trained like yours (the same
# losses, SGD with momentum 0.9, batches of 100, the same split), with a few other choices that
# each card states and explains: the learning rate and its schedule, how the batches were drawn
# and the hyperparameters of the loss.

# %%
SHIPPED = {"cross_entropy": "fashion_classifier", "triplet": "fashion_triplet", "smooth_ap": "fashion_smoothap"}
records = {name: load_checkpoint(models_dir() / f"{stem}.pt") for name, stem in SHIPPED.items()}
shipped = {name: net for name, (net, _) in records.items()}
cards = {name: json.loads((models_dir() / f"{stem}.json").read_text()) for name, stem in SHIPPED.items()}
for name, card in cards.items():
    print(f"{card['name']} ({name}): {card['epochs']} epochs of SGD, lr {card['optimizer']['lr']}, "
          f"momentum {card['optimizer']['momentum']}, batches of {card['batch_size']}")
    print(f"  schedule: {card['schedule']}")
    print(f"  batches: {card['sampler']}")
    print(f"  loss hyperparameters: {card['hyperparameters'] or 'none'}")
    print(f"  why: {card['notes']}")

# %% [markdown]
# Their training curves, from the histories saved in the checkpoints (each loss again divided by
# its first epoch's).

# %%
viz.training_curves({name: relative_loss(record["history"]) for name, (_, record) in records.items()})

# %% [markdown]
# **Report:** in the cell below, include the training curves and explain what the validation
# accuracy says about each of the three networks. Why is it meaningless for the networks trained
# with the triplet and Smooth-AP losses, and what would you measure on the validation set instead?

# %% [markdown] {"nbgrader": "answer", "id": "report_validation"}
# *Model answer (instructors only):* all three losses decrease. Only the classification network's
# validation accuracy rises (to about 0.9); those of the triplet and Smooth-AP networks stay below
# chance (0.1), the triplet network's falling to almost 0. Their losses are computed on
# `net.features(x)`, the input of the last linear layer, so that layer never receives a gradient:
# it keeps its random initialization, and its arg-max is a random function of the embedding that
# drifts as the features move, however good the embedding gets. Accuracy measures the classifier
# head, not the embedding; to select or stop a metric-learning run, measure retrieval on the
# validation set instead (mAP or Recall@K with validation images as queries), or the accuracy of
# a nearest-neighbour classifier on the embedding.

# %% [markdown]
# Mean average precision over the first 100 queries of the fixed test set with your
# `evaluate_mAP`, next to the report's Table I and the scores on the cards: `map_100` is the
# same measure (it should agree with yours), `map_1000` takes all 1,000 test images as queries
# and `map_10000` (on the cards that have it) all 10,000 images of the official test split.

# %%
scores = {name: evaluate_mAP(net, test_set, num_queries=100) for name, net in shipped.items()}

# %% [locked] reference_map
# NBVAL_CHECK_OUTPUT
REPORT_MAP = {"cross_entropy": 0.61, "triplet": 0.79, "smooth_ap": 0.77}  # Table I of the student report
columns = [key for key in ("map_100", "map_1000", "map_10000") if any(key in card["scores"] for card in cards.values())]
print(f"{'loss':<14}{'evaluate_mAP':>13}{'report':>8}" + "".join(f"{key:>11}" for key in columns))
for name, card in cards.items():
    on_card = "".join(f"{card['scores'][key]:>11.3f}" if key in card["scores"] else f"{'-':>11}" for key in columns)
    print(f"{name:<14}{scores[name][0]:>13.3f}{REPORT_MAP[name]:>8.2f}{on_card}")

# %%
viz.pr_curves({name: (recall, precision, mAP) for name, (mAP, precision, recall) in scores.items()},
              title="Fashion-MNIST, fixed test set, 100 queries")

# %% [markdown]
# **Report:** in the cell below, compare the mAP of the three networks with each other and with
# the report, and comment on the precision-recall curves.

# %% [markdown] {"nbgrader": "answer", "id": "report_comparison"}
# *Model answer (instructors only):* both metric-learning losses beat the classification network
# by a wide margin (mAP about 0.84 and 0.88 against 0.68), and all three shipped networks beat the
# report (0.61, 0.79, 0.77); Smooth-AP is ahead of the triplet loss, where the report had the
# triplet loss slightly ahead. The gains come from the training choices on the cards: learning
# rates tuned per loss with a cosine decay, and class-balanced batches that give every query 9
# positives. The classification network's precision declines steadily from the first retrieved
# images on; the metric-learning networks keep their precision up to a recall of about 0.8
# (Smooth-AP near 0.9, higher at every recall, the triplet network near 0.85) and then fall: the
# last positives of a class are found only after many negatives.

# %% [markdown]
# Retrieval with the queries of the report's figures (positions 993, 859, 298, 553, 672, 971,
# 27, 231, 306 and 706 of the fixed test set; our test set is ordered differently, so the images
# are not the report's): the 50 nearest test images of each query, the query itself excluded,
# by each network.

# %%
QUERY_IDS = [993, 859, 298, 553, 672, 971, 27, 231, 306, 706]
K = 50
query_ids = torch.tensor(QUERY_IDS)


def retrieve(net):
    """Indices [Q, K] of the K nearest test images of each query (itself excluded) by `net`'s features."""
    features = extract_features(net, images, progress=False)
    return neighbors.nearest(features[query_ids], features, K, exclude=query_ids)[1]


nearest = {name: retrieve(net) for name, net in shipped.items()}
correct = {name: (labels[found] == labels[query_ids, None]).sum(dim=1) for name, found in nearest.items()}

# %%
# NBVAL_CHECK_OUTPUT
print("query classes:", ", ".join(f"{i} {CLASSES[labels[i]]}" for i in QUERY_IDS))

# %%
for name, found in nearest.items():
    print(f"{name}: correct among the {K} retrieved: {correct[name].tolist()}")
    display(viz.retrieval_grid(images[query_ids], images[found], labels[query_ids], labels[found],
                               query_ids=QUERY_IDS))

# %%
viz.correct_retrievals_bars(correct, query_ids=QUERY_IDS, k=K)

# %% [markdown]
# t-SNE maps of the embeddings of the three networks (the first 1,000 test images; 300 in fast
# mode).

# %%
tsne.tsne_side_by_side(shipped, test_set, num_images=300 if fast_mode() else 1000, seed=0, class_names=CLASSES)

# %% [markdown]
# **Report:** in the cell below, compare the retrieved images of the three networks, the numbers
# of correct retrievals per query and the t-SNE maps. Which queries are hard for all three, and
# why?

# %% [markdown] {"nbgrader": "answer", "id": "report_retrieval"}
# *Model answer (instructors only):* the metric-learning networks retrieve more images of the
# query's class for almost every query, e.g. all 50 for the bag 298 (the classification network
# mixes in sandals). Shirts are hard for all three: at 28x28 pixels they look like T-shirts,
# pullovers and coats, and for the shirt 672 the three networks find 18 (cross-entropy), 30
# (triplet) and only 16 (Smooth-AP) shirts among 50. The exception is the dress 231, which
# looks like a coat: the metric-learning networks retrieve almost only coats, the classification
# network mostly dresses, so a sharper embedding also commits harder to an atypical image. In the
# t-SNE maps the classification network's classes form elongated clusters that touch (the
# upper-body garments, and the three kinds of footwear), while the metric-learning networks give
# compact, separated clusters, except for shirts, pullovers and coats, which stay close.
