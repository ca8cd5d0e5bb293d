"""Lab 2: is a submitted ``triplet_net.pt`` the student's own network, or a copy of one of the course's?

:func:`copied_network` compares the submitted file with every network in the instructor's model
folders: the same file, or feature layers within :data:`NEAR_COPY` of a course network's up to the
order and the positive rescaling of the channels (:func:`weight_distance`). The hidden checks of
the checkpoint ask it first (``autograder/labs/lab2_triplet/hidden.py`` adds it to
``labtools.labs.lab2_triplet.CHECKPOINT_GATES``); :mod:`autograder.similarity` compares submissions
with each other by the same distance. Computed in the grader's process, never in the sandboxed worker.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from autograder.paths import REPO_MODELS, grader_models_dir

#: Relative distance below which a submitted network's weights count as a copy of an instructor
#: network's (:func:`weight_distance`). A copy saved through float16 is at 0.0002 of the original,
#: through bfloat16 at 0.0017, and noise of 1% of each tensor's norm puts it at 0.0105 (the mAP does
#: not change: noise of 30% still leaves mnist_triplet at 0.97). Networks that are not copies are far
#: above: the closest to any of the course's networks is the untrained seed-0 ConvNet at 0.26 (from
#: the Lab 4 EPSHN backbones trained 10 epochs from it), the closest two of the course's networks are
#: at 0.31, a network trained for one epoch from seed 0 or 1 is at 1.2 or more from all of them, and
#: 100 SGD steps (lr 0.02) of fine-tuning move mnist_triplet by 0.028 (tests/labs/test_lab2_triplet.py
#: and tests/test_grading_e2e.py measure these cases).
NEAR_COPY = 0.01
#: The layers of ConvNet.features (``10`` is the classification layer, which the features do not use).
FEATURE_LAYERS = (("0.weight", (32, 1, 3, 3)), ("0.bias", (32,)), ("3.weight", (32, 32, 3, 3)), ("3.bias", (32,)),
                  ("6.weight", (64, 32, 3, 3)), ("6.bias", (64,)))


def instructor_model_dirs() -> list[Path]:
    """Every folder the grader reads the course's networks from: the repository's ``models/`` and
    :func:`autograder.paths.grader_models_dir` (``LABTOOLS_MODELS`` when set)."""
    found = [REPO_MODELS]
    try:
        found.append(grader_models_dir())
    except FileNotFoundError:
        pass
    unique = []
    for folder in found:
        if folder.is_dir() and folder.resolve() not in [u.resolve() for u in unique]:
            unique.append(folder)
    return unique


@lru_cache(maxsize=1)
def instructor_networks() -> tuple:
    """``((name, sha256, {prefix: feature layers}), ...)`` of every ``.pt`` under the instructor's model
    folders (``lab4/``, ``lab5/``, ``*.train.pt`` and ``*.best.pt`` included): the file's digest and the
    ConvNet feature layers it holds (a ConvNet's, the backbone of an EmbeddingNet or a DVML).
    Computed here, in the grader's process, never in the sandboxed worker."""
    from autograder.grading.hidden import file_digest  # not at the top: that module imports the labs' hidden checks

    found = []
    for folder in instructor_model_dirs():
        for path in sorted(folder.rglob("*.pt")):
            try:
                record = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # not a checkpoint (or unreadable): nothing to compare with
                continue
            state = record.get("state_dict", record) if isinstance(record, dict) else {}
            found.append((path.relative_to(folder).as_posix(), file_digest(path), convnet_parts(state)))
    return tuple(found)


def convnet_parts(state) -> dict[str, dict[str, torch.Tensor]]:
    """The ConvNet feature layers in a state dict, by key prefix (``""``, ``"backbone."``, ...), in float64."""
    parts = {}
    if not isinstance(state, dict):
        return parts
    for key in state:
        if isinstance(key, str) and key.endswith("0.weight"):
            prefix = key[: -len("0.weight")]
            tensors = {name: state.get(prefix + name) for name, _ in FEATURE_LAYERS}
            if all(isinstance(t, torch.Tensor) and tuple(t.shape) == shape and t.is_floating_point()
                   for (name, shape), t in zip(FEATURE_LAYERS, tensors.values())):
                parts[prefix] = {name: t.detach().double() for name, t in tensors.items()}
    return parts


def _canonical(part: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The feature layers without their rescaling symmetry: rows (output channels) of ``[weights, bias]``.

    ReLU and max-pooling commute with a positive scale, so scaling an output channel of conv 0 or 3
    (its weights and bias) by c and that channel's input weights in the next layer by 1 / c leaves
    the network's function unchanged, and so does scaling the whole last layer (the features are
    L2-normalized). Each row of layers 0 and 3 is brought to norm 1 (its norm carried into the next
    layer) and layer 6 as a whole. Returns the rows and their norms."""
    w0 = torch.cat([part["0.weight"].flatten(1), part["0.bias"][:, None]], dim=1)
    n0 = w0.norm(dim=1).clamp_min(1e-30)
    w3 = part["3.weight"] * n0[None, :, None, None]
    w3 = torch.cat([w3.flatten(1), part["3.bias"][:, None]], dim=1)
    n3 = w3.norm(dim=1).clamp_min(1e-30)
    w6 = part["6.weight"] * n3[None, :, None, None]
    w6 = torch.cat([w6.flatten(1), part["6.bias"][:, None]], dim=1)
    n6 = w6.norm().clamp_min(1e-30)
    return [w0 / n0[:, None], w3 / n3[:, None], w6 / n6], [n0, n3, n6]


def _match(reference: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``m`` such that ``rows[m[j]]`` is paired with ``reference[j]``: a one-to-one pairing, the most
    similar (cosine) pairs first."""
    sim = torch.nn.functional.normalize(reference, dim=1) @ torch.nn.functional.normalize(rows, dim=1).T
    pairing, taken, width = {}, set(), sim.shape[1]
    for flat in sim.flatten().argsort(descending=True).tolist():
        j, k = divmod(flat, width)
        if j not in pairing and k not in taken:
            pairing[j] = k
            taken.add(k)
            if len(pairing) == len(reference):
                break
    return torch.tensor([pairing[j] for j in range(len(reference))])


def _inputs_permuted(rows: torch.Tensor, pairing: torch.Tensor) -> torch.Tensor:
    """Rows ``[out, in * 9 + 1]`` of a conv layer with their input channels in the order ``pairing``."""
    weights = rows[:, :-1].reshape(len(rows), -1, 9)[:, pairing]
    return torch.cat([weights.flatten(1), rows[:, -1:]], dim=1)


def weight_distance(part: dict, reference: dict) -> float:
    """Relative L2 distance of a network's feature layers to a reference network's, up to what leaves
    the features unchanged: the order of the channels (matched one to one, layer after layer) and
    their positive rescaling (:func:`_canonical`). The difference is measured in the reference's own
    scale, so that it reads as ``||w - w_ref|| / ||w_ref||``: 0 for a copy, however its channels are
    permuted or rescaled, 0.01 for noise of 1% of each tensor's norm."""
    if all(torch.equal(part[name], reference[name]) for name, _ in FEATURE_LAYERS):
        return 0.0
    mine, _ = _canonical(part)
    theirs, (n0, n3, n6) = _canonical(reference)
    # back to the reference's scale: row r of a layer is (weights * out norm / in norms, bias * out norm)
    scales = [lambda r: r * n0[:, None],
              lambda r: torch.cat([(r[:, :-1].reshape(32, 32, 9) * n3[:, None, None] / n0[None, :, None]).flatten(1),
                                   r[:, -1:] * n3[:, None]], dim=1),
              lambda r: torch.cat([(r[:, :-1].reshape(64, 32, 9) * n6 / n3[None, :, None]).flatten(1),
                                   r[:, -1:] * n6], dim=1)]
    total = sum(float(scale(rows).square().sum()) for scale, rows in zip(scales, theirs))
    far = NEAR_COPY ** 2 * total * 100  # far beyond a copy already: no need to match the next layers
    squared = 0.0
    for layer, scale in enumerate(scales):
        pairing = _match(theirs[layer], mine[layer])
        mine[layer] = mine[layer][pairing]
        if layer + 1 < len(mine):
            mine[layer + 1] = _inputs_permuted(mine[layer + 1], pairing)
        squared += float((scale(mine[layer]) - scale(theirs[layer])).square().sum())
        if squared > far:
            break
    return (squared / total) ** 0.5


_COPIES: dict[str, str | None] = {}


def copied_network(path, record, name: str = "triplet_net.pt") -> str | None:
    """Why the submitted checkpoint ``path`` (read as ``record``) is not the student's own network,
    or ``None``: its file is one of the course's, or its feature layers (or those of the network it
    holds) are within :data:`NEAR_COPY` of those of one of :func:`instructor_networks`."""
    from autograder.grading.hidden import file_digest

    digest = file_digest(path)
    if digest not in _COPIES:
        _COPIES[digest] = _copied(digest, record, name)
    return _COPIES[digest]


def _copied(digest: str, record, name: str) -> str | None:
    advice = "submit the network your train_triplets trained"
    networks = instructor_networks()
    for course_name, course_digest, _ in networks:
        if digest == course_digest:
            return f"{name} has the same weights as the course's own network {course_name}: {advice}"
    parts = convnet_parts(record.get("state_dict") if isinstance(record, dict) else None)
    for part in parts.values():
        for course_name, _, course_parts in networks:
            for reference in course_parts.values():
                distance = weight_distance(part, reference)
                if distance < NEAR_COPY:
                    same = "the same weights as" if distance < 1e-6 else "nearly the same weights as"
                    return f"{name} has {same} the course's own network {course_name}: {advice}"
    return None
