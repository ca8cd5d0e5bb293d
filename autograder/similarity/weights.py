"""Submitted checkpoints whose weights are identical or nearly so: to each other's, or to a course network's.

A checkpoint is read only when it is a regular file (not a symbolic link) of at most
:data:`~labtools.labs.lab2_triplet.MAX_CHECKPOINT_BYTES` whose zip members unpack to no more (torch
inflates a compressed member: a small file could fill the memory), and then only with
``torch.load(weights_only=True)`` (:func:`labtools.models.read_checkpoint`).

Networks are compared as the grader compares a submission with the course's networks
(:mod:`autograder.labs.lab2_triplet.copies`): by the ConvNet feature layers (:func:`~autograder.labs.lab2_triplet.copies.convnet_parts`)
and :func:`~autograder.labs.lab2_triplet.copies.weight_distance`, ``||w - w_ref|| / ||w_ref||`` up to a
permutation and rescaling of the channels, below :data:`~autograder.labs.lab2_triplet.copies.NEAR_COPY` for a
copy (0.0002 for one saved through float16, 0.0105 for noise of 1% of each tensor's norm; networks
trained apart are at 0.26 or more). Each student's network is compared with every classmate's and
with every course network (:func:`~autograder.labs.lab2_triplet.copies.instructor_networks`), but only where
their plain weights are within :data:`SCREEN` of each other's: ``weight_distance`` matches channels,
which takes long for a class of 300 against the course's networks and longer for its 44,850 pairs
(``benchmarks/similarity.py``, figures in ``benchmarks/README.md``). A copy whose channels were permuted or rescaled is therefore not found here; when it is a
copy of a course network, the grader's own check (``copied_network``) refuses it in ``grades.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from autograder.grading.hidden import file_digest
from autograder.labs.lab2_triplet.copies import NEAR_COPY, convnet_parts, instructor_networks, weight_distance
from labtools.labs.lab2_triplet import MAX_CHECKPOINT_BYTES
from labtools.models import CheckpointTooLarge, read_checkpoint

#: The checkpoint a lab asks for beside the notebook, by lab (labs with a checkpoint deliverable).
DELIVERABLES = {"lab2_triplet": "triplet_net.pt"}
#: Plain relative distance of two networks' feature layers under which the pair is measured.
SCREEN = 10 * NEAR_COPY


class UnreadableCheckpoint(ValueError):
    """A submitted checkpoint that is not compared: the message says why."""


@dataclass(frozen=True)
class Weights:
    """A network: the SHA-256 of its file and its feature layers (``{name: tensor}``, float64, as
    :func:`~autograder.labs.lab2_triplet.copies.convnet_parts` gives them)."""

    digest: str
    part: dict


@dataclass(frozen=True)
class WeightMatch:
    """A student's network and ``other`` (a classmate, or ``course:<file>``) within
    :data:`~autograder.labs.lab2_triplet.copies.NEAR_COPY`: ``distance`` is 0.0 for the same weights."""

    student: str
    other: str
    distance: float
    same_file: bool

    @property
    def detail(self) -> str:
        if self.same_file:
            return "the same file"
        if self.distance == 0.0:
            return "the same weights"
        return f"nearly the same weights (relative distance {self.distance:.4f})"


def read_weights(path: Path) -> Weights:
    """The network of the checkpoint ``path``; raises :class:`UnreadableCheckpoint` saying why it is
    not compared (a link, too large, not a checkpoint, no ConvNet in it)."""
    name = path.name
    if path.is_symlink():
        raise UnreadableCheckpoint(f"{name} is a symbolic link: not compared")
    if not path.is_file():
        raise UnreadableCheckpoint(f"{name} is not a regular file: not compared")
    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise UnreadableCheckpoint(f"{name} is {size / 2 ** 20:.0f} MB, larger than a checkpoint of the lab's "
                                   "ConvNet: not compared")
    try:
        record = read_checkpoint(path, max_bytes=MAX_CHECKPOINT_BYTES)
    except CheckpointTooLarge as error:
        raise UnreadableCheckpoint(f"{error}: not compared") from None
    except Exception as error:  # whatever torch's safe loader refuses: junk, pickles, truncated files
        raise UnreadableCheckpoint(f"{name} is not a checkpoint torch.load(weights_only=True) can read "
                                   f"({type(error).__name__}): not compared") from None
    parts = convnet_parts(record.get("state_dict"))
    if not parts:
        raise UnreadableCheckpoint(f"{name} holds no ConvNet feature layers: not compared")
    return Weights(file_digest(path), next(iter(parts.values())))


def course_weights() -> dict[str, Weights]:
    """``{"course:<file>": Weights}``: the feature layers of each of the course's networks (of a Lab 4
    or Lab 5 network, its backbone: ``course:<file> (backbone)``)."""
    return {f"course:{name}" + (f" ({prefix.rstrip('.')})" if prefix else ""): Weights(digest, part)
            for name, digest, parts in instructor_networks() for prefix, part in parts.items()}


def weight_matches(students: dict[str, Weights], course: dict[str, Weights]) -> list[WeightMatch]:
    """Every pair of students, and every student and course network, whose files are the same or whose
    weights are within :data:`~autograder.labs.lab2_triplet.copies.NEAR_COPY` of each other, closest first."""
    names, others = sorted(students), sorted(students) + sorted(course)
    networks = {**students, **course}
    if not names:
        return []
    vectors = torch.stack([torch.cat([t.flatten() for t in networks[n].part.values()]) for n in others])  # [S + C, P]
    norms = vectors.norm(dim=1)
    plain = torch.cdist(vectors[:len(names)], vectors) / torch.maximum(norms[:len(names), None],
                                                                      norms[None, :]).clamp_min(1e-30)  # [S, S + C]
    by_digest: dict[str, list[int]] = {}
    for j, name in enumerate(others):
        by_digest.setdefault(networks[name].digest, []).append(j)
    same = {(i, j) for group in by_digest.values() for i in group for j in group if i < len(names)}
    matches = []
    for i, j in sorted(same | {tuple(pair) for pair in (plain < SCREEN).nonzero().tolist()}):
        if j <= i:  # each pair of students once
            continue
        a, b = networks[names[i]], networks[others[j]]
        distance = 0.0 if (i, j) in same else weight_distance(a.part, b.part)
        if distance < NEAR_COPY:
            matches.append(WeightMatch(names[i], others[j], distance, (i, j) in same))
    matches.sort(key=lambda m: (m.distance, m.student, m.other))
    return matches
