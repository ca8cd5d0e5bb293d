# Source of the Lab 1 notebook (lab1_retrieval). Build it with:
#     python -m autograder.notebooks build lab1_retrieval
# The [solution] and [tests] cells are those of the lab's spec, labtools/labs/lab1_retrieval.py (with
# their points); the solutions are generated from autograder/labs/lab1_retrieval/reference.py; see
# autograder/notebooks.py.

# %% [markdown]
# # Lab 1: Image retrieval and mean average precision
#
# A network maps an image $x$ to a feature vector $f(x) \in \mathbb{R}^d$, its *embedding*. If
# the embedding is good, images of the same kind lie close to each other, so we can *retrieve*
# images similar to a query by looking up the nearest neighbours of the query's embedding.
#
# We use the lab's small ConvNet trained for **classification** on MNIST (about 99% accuracy) and
# take its last hidden layer as the embedding. `net.features(x)` returns that layer
# **L2-normalized**: every row has $\|f_{i,:}\|_2 = 1$, so all embeddings lie on the unit sphere
# and the squared Euclidean distance between two of them depends only on their inner product.
#
# In this lab you will
#
# 1. compute the squared Euclidean distances between embeddings **without loops** (`distances`),
# 2. retrieve the 50 closest test images of a few queries and look at them,
# 3. compute the average precision of one query (`evaluate_AP`, **without loops**) and the mean
#    average precision of the network over 100 queries (`evaluate_mAP`; this one may loop over
#    the queries), and plot the precision-recall curve.
#
# Only `distances` and `evaluate_AP` must be loop-free. The cells marked as tests run the public
# checks of each function; the autograder runs more (hidden) checks of the same kind.
#
# **Report:** the method you used to compute all the distances, the figure of retrieved images,
# the precision-recall curve and the mAP. Write the answers in the cells marked *YOUR ANSWER HERE*.

# %% [locked] setup
%matplotlib inline
import json

import torch

from labtools import viz
from labtools.data import fixed_test_set
from labtools.models import extract_features, load_checkpoint
from labtools.paths import models_dir

# %% [markdown]
# ## Data and network
#
# The fixed test set holds 100 test images of each digit (1,000 images) in a seeded random order,
# the same for everyone. The shipped classification network is in the course's `models/` folder
# (`labtools.paths.models_dir()` finds it from wherever the notebook runs).

# %% [locked] load
test_set = fixed_test_set("MNIST")
images, labels = test_set.tensors
net, net_record = load_checkpoint(models_dir() / "mnist_classifier.pt")

# %%
# NBVAL_CHECK_OUTPUT
print("images:", tuple(images.shape), images.dtype)
print("labels:", tuple(labels.shape), labels.dtype)
print("first labels:", labels[:10].tolist())

# %% [markdown]
# ## 1. Distances
#
# Implement `distances(query, items)`: the squared Euclidean distances between every row of
# `query` `[Q, D]` and every row of `items` `[N, D]`, as a `[Q, N]` tensor, **without loops**.
#
# *Hint:* the rows are normalized, so expand $\|a - b\|_2^2$ and simplify it. Learn how to use
# [`torch.einsum`](https://pytorch.org/docs/stable/generated/torch.einsum.html) for the inner
# products.

# %% [solution] distances

# %% [tests] distances
from labtools.checks import run_public_checks

run_public_checks("lab1_retrieval", "distances", distances);

# %% [markdown]
# A quick look at the result: the embeddings of the test set, the distances of the first 8
# images to all 1,000, and the distance of one fixed pair (test images 0 and 1).

# %%
features = extract_features(net, images, progress=False)
dist = distances(features[:8], features)

# %%
# NBVAL_CHECK_OUTPUT
print("features:", tuple(features.shape))
print("distances:", tuple(dist.shape))
print(f"d(test[0], test[1]) = {dist[0, 1].item():.4f}")
print("an image is at distance 0 from itself:", bool(dist.diagonal().abs().max() < 1e-4))

# %% [markdown]
# **Report:** in the cell below, describe how you compute all the squared Euclidean distances at
# once, without loops.

# %% [markdown] {"nbgrader": "answer", "id": "report_distances"}
# *Model answer (instructors only):* for unit rows, $\|a - b\|_2^2 = \|a\|^2 + \|b\|^2 - 2\langle a, b\rangle
# = 2 - 2\langle a, b\rangle$. All inner products are one matrix product, written
# `torch.einsum("qd,nd->qn", query, items)`, so the distances are `2 - 2 * G` for that `[Q, N]`
# matrix `G`; clamping at 0 removes tiny negative values due to rounding.

# %% [markdown]
# ## 2. Retrieval
#
# For each query we retrieve the 50 test images closest to it (the query itself excluded). The
# queries are the first 8 images of the fixed test set, `QUERY_IDS = [0, 1, ..., 7]`: since the
# fixed test set is in a seeded random order, they are a random but fixed choice, the same in
# every notebook of the course (Lab 2 uses them too). In the figure, each row is one query (on
# the left), followed by its 50 retrieved images, closest first, framed in green when of the
# query's class and in red otherwise.

# %%
QUERY_IDS = [0, 1, 2, 3, 4, 5, 6, 7]
K = 50

query_ids = torch.tensor(QUERY_IDS)
dist = distances(features[query_ids], features)
dist[torch.arange(len(query_ids)), query_ids] = float("inf")  # the query itself is not retrieved
nearest = torch.argsort(dist, dim=1, stable=True)[:, :K]  # [Q, K] indices into the test set
correct = (labels[nearest] == labels[query_ids, None]).sum(dim=1)
print("query labels:", labels[query_ids].tolist())
print(f"correct among the {K} retrieved:", correct.tolist())

# %%
viz.retrieval_grid(images[query_ids], images[nearest], labels[query_ids], labels[nearest], query_ids=QUERY_IDS)

# %% [markdown]
# **Report:** in the cell below, include the figure of retrieved images above and comment on it:
# which queries work well, which mistakes does the network make?

# %% [markdown] {"nbgrader": "answer", "id": "report_retrieval"}
# *Model answer (instructors only):* most of the 50 neighbours share the query's class; the
# mistakes are digits that look alike (4 and 9, 3 and 5, 7 and 1), and they come late in the
# ranking. The classification features separate the classes but do not make every same-class
# image closer than every other-class image.

# %% [markdown]
# ## 3. Average precision
#
# For one query, sort all other items by increasing distance. Let ${\rm rel}(k) = 1$ when the
# item at position $k$ is of the query's class, $0$ otherwise, and $T$ the number of items of the
# query's class. Precision and recall at $k$ are
# $$ {\rm prec}(k) = \frac{1}{k}\sum_{i=1}^k {\rm rel}(i), \qquad
#    {\rm recall}(k) = \frac{1}{T}\sum_{i=1}^k {\rm rel}(i), $$
# and the average precision is the area under the precision-recall curve, over the **whole**
# ranking of the $N$ items (not only the 50 best):
# $$ {\rm AP} = \sum_{k=1}^N {\rm prec}(k)\, \Delta{\rm recall}(k) = \sum_{k=1}^N {\rm prec}(k)\, \frac{{\rm rel}(k)}{T}. $$
#
# Implement `evaluate_AP(dist, labels, query_label)` **without loops**: `dist` `[N]` are the
# distances from the query to the items (the query itself already removed), `labels` `[N]` their
# labels. Return `(ap, precision, recall)`: the AP as a 0-d tensor and the `[N]` tensors of
# ${\rm prec}(k)$ and ${\rm recall}(k)$ for $k = 1, \dots, N$. Keep the order of items at equal
# distance (a stable sort). *Hint:* `torch.argsort` and `torch.cumsum`.

# %% [solution] evaluate_AP

# %% [tests] evaluate_AP
from labtools.checks import run_public_checks

run_public_checks("lab1_retrieval", "evaluate_AP", evaluate_AP);

# %% [markdown]
# A small example to check by hand: four items ranked 0, 2, 3, 1 by distance, of which items 0
# and 3 are relevant, so AP = (1/1 + 2/3) / 2.

# %%
# NBVAL_CHECK_OUTPUT
ap, precision, recall = evaluate_AP(torch.tensor([0.1, 0.4, 0.2, 0.3]), torch.tensor([1, 0, 0, 1]), 1)
print(f"AP = {float(ap):.4f}")
print("precision:", [round(float(p), 4) for p in precision])
print("recall:", [round(float(r), 4) for r in recall])

# %% [markdown]
# ## 4. Mean average precision
#
# Implement `evaluate_mAP(net, dataset, num_queries=100)`: use the first `num_queries` images of
# `dataset` as queries, rank each of them against the **other** $N - 1$ images, and return
# `(mAP, precision, recall)`: the mean of the APs (a float) and the precision and recall at
# $k = 1, \dots, N - 1$ averaged over the queries (`[N - 1]` tensors: the precision-recall curve).
# You may loop over the queries here. Use `extract_features` (imported above) to get the
# embeddings in batches.

# %% [solution] evaluate_mAP

# %% [tests] evaluate_mAP
from labtools.checks import run_public_checks

run_public_checks("lab1_retrieval", "evaluate_mAP", evaluate_mAP);

# %%
mAP, precision, recall = evaluate_mAP(net, test_set, num_queries=100)

# %%
# NBVAL_CHECK_OUTPUT
print(f"mAP = {mAP:.3f}")
print("PR curve points:", len(precision), len(recall))

# %% [markdown]
# The mAP of the shipped network, as measured by the course's evaluator and written on the
# network's card (`models/mnist_classifier.json`). Your `evaluate_mAP` should give the same
# figure to the third decimal.

# %% [locked] reference_map
# NBVAL_CHECK_OUTPUT
card = json.loads((models_dir() / "mnist_classifier.json").read_text())
print(f"reference mAP of the shipped network: {card['scores']['map_100']:.3f}")

# %% [markdown]
# ## 5. Precision-recall curve

# %%
viz.pr_curves({"classification network": (recall, precision, mAP)}, title="MNIST, fixed test set, 100 queries")

# %% [markdown]
# **Report:** in the cell below, include the precision-recall curve and the mAP you obtained, and
# compare them with the reference above.

# %% [markdown] {"nbgrader": "answer", "id": "report_pr_map"}
# *Model answer (instructors only):* the mAP matches the reference to the third decimal (the
# original lab quotes about 0.74 for this network). Precision stays high at low recall and drops
# as recall grows: the first neighbours are mostly right, but many same-class images are ranked
# behind images of other classes.
