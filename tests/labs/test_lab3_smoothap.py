"""Lab 3, Smooth-AP: the reference loss (autograder.labs.lab3_smoothap.reference.smooth_ap_loss), its
memory check, and submissions graded in the sandbox."""

import inspect
import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from autograder.evaluation import full_ranking_ap
from autograder.labs.lab3_smoothap import reference as lab3
from autograder.labs.lab3_smoothap.reference import smooth_ap_loss
from labtools.checks import loop_violations

sys.path.insert(0, str(Path(__file__).parents[1] / "submissions"))
import build  # noqa: E402

LAB = "lab3_smoothap"
MISTAKES = build.mistakes(LAB)


def plain_smooth_ap(features, labels, tau, include_query=False):
    """The definition, loop by loop. include_query=True ranks the query among the items and counts
    it as its own positive, as the official code (and pytorch-metric-learning) do."""
    sim = features @ features.T
    losses = []
    for q in range(len(labels)):
        items = [j for j in range(len(labels)) if include_query or j != q]
        positives = [i for i in items if labels[i] == labels[q]]
        if not positives:
            continue
        ap = 0.0
        for i in positives:
            above = {j: torch.sigmoid((sim[q, j] - sim[q, i]) / tau) for j in items if j != i}
            ap += (1 + sum(above[j] for j in positives if j != i)) / (1 + sum(above.values()))
        losses.append(1 - ap / len(positives))
    return torch.stack(losses).mean() if losses else torch.tensor(0.0)


def unit_rows(n, d=8, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)


def balanced_labels(classes, per_class):
    return torch.arange(classes).repeat_interleave(per_class)


@pytest.mark.parametrize("tau", [0.01, 0.1])
@pytest.mark.parametrize(
    "labels",
    [
        balanced_labels(4, 4),
        balanced_labels(3, 5)[torch.randperm(15, generator=torch.Generator().manual_seed(1))],
        torch.tensor([0, 0, 0, 0, 0, 1, 1, 2, 3, 3, 3, 1, 0, 4]),  # unbalanced; class 2 has one member
    ],
    ids=["balanced", "balanced-shuffled", "unbalanced-singleton"],
)
def test_equals_the_definition(labels, tau):
    features = unit_rows(len(labels), seed=len(labels))
    expected = plain_smooth_ap(features, labels, tau)
    assert smooth_ap_loss(features, labels, tau=tau).item() == pytest.approx(expected.item(), abs=1e-10)
    single = smooth_ap_loss(features.float(), labels, tau=tau)
    assert single.dtype == torch.float32 and single.item() == pytest.approx(expected.item(), abs=1e-5)


def test_no_query_with_a_positive_gives_zero():
    assert smooth_ap_loss(unit_rows(5), torch.arange(5)).item() == 0.0


def test_the_query_is_excluded():
    """3 items, labels [0, 0, 1]: queries 0 and 1 each have one positive and one negative."""
    features = unit_rows(3, d=2, seed=3)
    labels = torch.tensor([0, 0, 1])
    tau = 0.1
    s = features @ features.T
    ap0 = 1 / (1 + torch.sigmoid((s[0, 2] - s[0, 1]) / tau))
    ap1 = 1 / (1 + torch.sigmoid((s[1, 2] - s[1, 0]) / tau))
    expected = 1 - (ap0 + ap1) / 2
    assert smooth_ap_loss(features, labels, tau=tau).item() == pytest.approx(expected.item(), abs=1e-12)
    with_query = plain_smooth_ap(features, labels, tau, include_query=True)
    assert abs(with_query - expected) > 0.05  # the check above tells the two apart


def test_perfect_ranking_gives_zero_and_reversed_ranking_one():
    g = torch.Generator().manual_seed(0)
    labels = balanced_labels(5, 4)
    clustered = torch.eye(16, dtype=torch.float64)[labels] + 0.01 * torch.randn(20, 16, generator=g, dtype=torch.float64)
    assert smooth_ap_loss(torch.nn.functional.normalize(clustered, dim=1), labels, tau=0.01).item() < 1e-6

    # two opposite positives, 50 negatives (singleton classes) orthogonal to both: for both
    # queries every negative ranks above the positive, AP = 1 / 51
    negatives = torch.nn.functional.normalize(torch.randn(50, 15, generator=g, dtype=torch.float64), dim=1)
    features = torch.zeros(52, 16, dtype=torch.float64)
    features[0, 0], features[1, 0], features[2:, 1:] = 1.0, -1.0, negatives
    labels = torch.cat([torch.tensor([0, 0]), torch.arange(1, 51)])
    assert smooth_ap_loss(features, labels, tau=0.01).item() == pytest.approx(50 / 51, abs=1e-6)


def test_small_tau_gives_the_exact_average_precision_and_tau_matters():
    features, labels = unit_rows(30, seed=5), torch.arange(6).repeat(5)
    gaps = (features @ features.T).sort(dim=1).values.diff(dim=1)
    assert gaps.min() > 1e-6  # each query sees distinct similarities: the tau -> 0 limit is the exact AP
    exact_map = full_ranking_ap(features, labels).mean().item()
    assert 1 - smooth_ap_loss(features, labels, tau=1e-8).item() == pytest.approx(exact_map, abs=1e-6)
    losses = [smooth_ap_loss(features, labels, tau=tau).item() for tau in (0.01, 0.1, 1.0)]
    assert len({round(loss, 6) for loss in losses}) == 3


def test_matches_pytorch_metric_learning():
    """pytorch-metric-learning's SmoothAPLoss (a port of the official code) differs in one point:
    it ranks the query among the items, as its own first positive (the lab excludes it). It needs
    batches of C classes x K images ordered by class, and (release 2.9.0) takes B // C = K for the
    number of classes, so it reads groups of C consecutive rows as the classes: right only when
    C == K (4 x 4 here; 3 x 5 gives the loss of the 5 x 3 grouping). Its `temperature` is our tau."""
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    if not hasattr(losses, "SmoothAPLoss"):
        pytest.skip("this release of pytorch-metric-learning has no SmoothAPLoss")
    labels = balanced_labels(4, 4)
    features = unit_rows(16, seed=7, dtype=torch.float32)
    for tau in (0.01, 0.1):
        theirs = losses.SmoothAPLoss(temperature=tau)(features, labels).item()
        assert theirs == pytest.approx(plain_smooth_ap(features, labels, tau, include_query=True).item(), abs=1e-5)
        ours = smooth_ap_loss(features, labels, tau=tau).item()
        assert ours == pytest.approx(plain_smooth_ap(features, labels, tau).item(), abs=1e-5)
        assert abs(ours - theirs) > 1e-3  # the query's own term is what differs


class LargestTensor(TorchDispatchMode):
    """Records the number of elements of the largest tensor any ATen op returns, backward included."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


def cubic_smooth_ap(features, labels, tau):
    """Loop-free but with [B, B, B] tensors, as the official code: must fail the memory check."""
    batch = len(labels)
    sim = features @ features.T
    not_self = ~torch.eye(batch, dtype=torch.bool)
    positive = (labels[:, None] == labels[None, :]) & not_self
    above = torch.sigmoid((sim[:, None, :] - sim[:, :, None]) / tau)  # [q, i, j]
    others = not_self[:, None, :] & not_self[None, :, :]  # j != q and j != i
    rank_all = 1 + (above * others).sum(2)
    rank_pos = 1 + (above * (others & positive[:, None, :])).sum(2)
    ap = (positive * rank_pos / rank_all).sum(1) / positive.sum(1).clamp_min(1)
    return (1 - ap)[positive.any(1)].mean()


def largest_tensor(loss_fn, classes, per_class):
    features = unit_rows(classes * per_class, seed=1).requires_grad_()
    with LargestTensor() as mode:
        loss_fn(features, balanced_labels(classes, per_class), 0.01).backward()
    return mode.numel


@pytest.mark.parametrize("classes,per_class", [(16, 4), (32, 4), (8, 8)])
def test_memory_grows_like_b_squared_times_m(classes, per_class):
    batch = classes * per_class
    bound = batch * batch * (per_class - 1)  # [B, M, B], M = K - 1 positives per query
    assert largest_tensor(smooth_ap_loss, classes, per_class) <= bound
    assert largest_tensor(cubic_smooth_ap, classes, per_class) > bound  # the check can fail


def test_gradients_flow():
    features = unit_rows(24, seed=2, dtype=torch.float32).requires_grad_()
    labels = torch.tensor([0, 1, 2, 3, 4, 5] * 3 + [0, 0, 1, 6, 7, 7])
    smooth_ap_loss(features, labels, tau=0.01).backward()
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0
    assert features.grad[labels == 6].abs().sum() > 0  # a singleton still ranks as a negative


def test_loop_free():
    assert loop_violations(inspect.getsource(lab3), "smooth_ap_loss") == []


@pytest.mark.parametrize(
    "features,labels,tau,message",
    [
        (torch.ones(4, 2).numpy(), torch.zeros(4, dtype=torch.long), 0.01, "must be tensors"),
        (torch.ones(4), torch.zeros(4, dtype=torch.long), 0.01, "float \\[B, D\\]"),
        (torch.ones(4, 2, dtype=torch.long), torch.zeros(4, dtype=torch.long), 0.01, "float \\[B, D\\]"),
        (torch.ones(0, 2), torch.zeros(0, dtype=torch.long), 0.01, "B >= 1"),
        (torch.ones(4, 2), torch.zeros(3, dtype=torch.long), 0.01, "integer \\[4\\]"),
        (torch.ones(4, 2), torch.zeros(4), 0.01, "integer \\[4\\]"),
        (torch.ones(4, 2), torch.zeros(4, dtype=torch.long), 0.0, "tau must be positive"),
    ],
)
def test_wrong_inputs_are_named(features, labels, tau, message):
    with pytest.raises(ValueError, match=message):
        smooth_ap_loss(features, labels, tau=tau)


# ----------------------------------------------------------------------------------------------
# the memory check: what torch's CPU allocator hands out, however the code builds its tensors


def _mistake(name):
    return build.mistake_code(LAB, name)["smooth_ap_loss"]


def _measured(function, batch, **call):
    """counts of one measured call of ``function`` (in this process, as run_public_checks does)."""
    from labtools.labs.lab3_smoothap import smooth_ap_memory_call
    from labtools.checks.worker import perform_call

    job = {**smooth_ap_memory_call(batch).as_job(), "function": "f", **call}
    raw = perform_call({"f": function}, job, "/tmp")
    assert raw["ok"], raw["error"]
    return raw["counts"]


def _cubic_forward(features, labels, tau):
    return torch.sigmoid((features @ features.T)[:, None, :] - (features @ features.T)[:, :, None]).mean()


class _CubeInBackward(torch.autograd.Function):
    """A cheap forward whose backward builds [B, B, B]."""

    @staticmethod
    def forward(ctx, features):
        ctx.save_for_backward(features)
        return features.sum() * 0

    @staticmethod
    def backward(ctx, grad):
        (features,) = ctx.saved_tensors
        b = len(features)
        return grad * torch.ones(b, b, b).sum(dim=(1, 2))[:, None] * 0 + features * 0


HIDDEN_CUBES = {
    # per query [B, B], vmapped over the queries: [B, B, B] in memory, never named in the code
    "vmap": lambda f, l, tau: torch.func.vmap(lambda s: torch.sigmoid(s[None, :] - s[:, None]).mean())(f @ f.T).mean(),
    # a gradient computed by torch.func.grad inside the call
    "func.grad": lambda f, l, tau: torch.func.grad(lambda x: _cubic_forward(x, l, tau))(f.detach()).sum(),
    # the cube only in the backward pass
    "backward": lambda f, l, tau: _CubeInBackward.apply(f),
    # an in-place resize of an empty tensor, an out= argument
    "in-place": lambda f, l, tau: torch.empty(0).resize_(len(l), len(l), len(l)).fill_(1).mean() + f.sum() * 0,
    "out=": lambda f, l, tau: torch.add(f.detach()[:, None, None, 0], f.detach()[None, :, None, 1]
                                        + f.detach()[None, None, :, 2], out=torch.empty(0)).mean(),
}


@pytest.mark.parametrize("how", sorted(HIDDEN_CUBES))
def test_the_measurement_sees_every_b_cubed_tensor(how):
    from labtools.labs.lab3_smoothap import memory_used

    batch = 64
    used, _ = memory_used(_measured(HIDDEN_CUBES[how], batch))
    assert used >= batch ** 3 * 4, (how, used)
    reference, _ = memory_used(_measured(smooth_ap_loss, batch))
    assert reference < batch * 4 * batch * 4 * 6  # a few [B, m, B] tensors


def test_the_measurement_is_deterministic_and_single_threaded():
    torch.set_num_threads(2)
    try:
        first, second = (_measured(smooth_ap_loss, 128) for _ in range(2))
    finally:
        torch.set_num_threads(1)
    keys = ("peak_bytes", "largest_operand_bytes")
    assert [first[k] for k in keys] == [second[k] for k in keys]
    assert first["peak_bytes"] > 0 and torch.get_num_threads() == 1


def test_memory_allocated_before_the_call_and_a_stopped_profiler_do_not_hide_the_cube():
    from labtools.labs.lab3_smoothap import memory_used, smooth_ap_memory_call
    from labtools.checks.worker import perform_call

    buffer = torch.empty(2 ** 22)

    def preallocated(features, labels, tau):  # writes its [B, B, B] into a buffer made beforehand
        b = len(labels)
        cube = buffer[:b ** 3].view(b, b, b)
        cube.copy_(torch.ones(1, 1, 1).expand(b, b, b))
        return cube.sum() * 0 + features.sum() * 0

    used, how = memory_used(_measured(preallocated, 64))
    assert how == "operand" and used >= 64 ** 3 * 4

    def stops_the_profiler(features, labels, tau):
        torch.autograd._disable_profiler()
        return torch.ones(len(labels), len(labels), len(labels)).sum() * 0 + features.sum() * 0

    raw = perform_call({"f": stops_the_profiler}, {**smooth_ap_memory_call(64).as_job(), "function": "f"}, "/tmp")
    assert not raw["ok"] and "could not be measured" in raw["error"]
    assert not torch.autograd._profiler_enabled()


@pytest.mark.parametrize("name", ["reference", "smoothap_cube", "smoothap_vmap"])
def test_the_memory_check_in_the_sandbox(tmp_path, name):
    """The vmapped Smooth-AP (right values, loop-free, [B, B, B] only in vmap's batched tensors)
    and the cube lose smooth_ap_loss.memory and only it; the reference passes."""
    from labtools.checks.engine import check_source

    source = "import torch\n\n" + inspect.getsource(smooth_ap_loss) if name == "reference" else _mistake(name)
    results = {r.check.id: r for r in check_source(source, "lab3_smoothap", workroot=tmp_path)}
    lost = {cid: r.message for cid, r in results.items() if not r.passed}
    memory = results["smooth_ap_loss.memory"].message
    if name == "reference":
        assert not lost, lost
        assert "grew 4.0x" in memory, memory
    else:
        assert set(lost) == {"smooth_ap_loss.memory"}, lost
        assert "like B^3" in memory and "grew 8.0x" in memory and "Gather each query's m - 1 positives" in memory
        assert ("vmapped over the queries" in memory) == (name == "smoothap_vmap")


def test_a_loop_inside_a_vmapped_function_is_still_a_loop():
    source = _mistake("smoothap_vmap").replace("        count = pos.sum()\n",
                                                "        count = pos.sum()\n        for k in range(3):\n"
                                                "            count = count + 0\n")
    assert any("a for loop" in p for p in loop_violations(source, "smooth_ap_loss"))
    assert loop_violations(_mistake("smoothap_vmap"), "smooth_ap_loss") == []


# ----------------------------------------------------------------------------------------------
# submissions graded in the sandbox


@pytest.mark.parametrize("mistake, lost_checks, hint", [
    (None, set(), None),
    ("smoothap_cube", MISTAKES["smoothap_cube"].lost, "like B^3"),
    ("query_included", MISTAKES["query_included"].lost, "count as its own positive"),
    ("wrong_sign", MISTAKES["wrong_sign"].lost, "check the sign of D_ij"),
    ("tau_ignored", MISTAKES["tau_ignored"].lost, "tau seems ignored"),
])
def test_lab3_mistakes_lose_exactly_their_checks(tmp_path, mistake, lost_checks, hint):
    """Query not excluded, wrong sign of D, tau ignored: values; the B^3 version: memory only."""
    from autograder.grading.trusted import grade_submission

    path = build.write_submission(tmp_path / "s", LAB, replace=build.mistake_code(LAB, mistake) if mistake else None)
    result = grade_submission(path, LAB, workroot=tmp_path)
    assert {c["check"] for c in result["checks"]} >= {"smooth_ap_loss.memory", "smooth_ap_loss.hidden_random"}
    lost = {c["check"] for c in result["checks"] if c["points"] < c["max_points"]}
    assert lost == lost_checks
    total = sum(c["points"] for c in result["checks"])
    assert total == pytest.approx(3.0 - sum(c["max_points"] for c in result["checks"] if c["check"] in lost_checks))
    if hint:
        assert any(hint in c["message"] for c in result["checks"] if c["check"] in lost_checks)
