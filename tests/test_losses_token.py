"""Token-level LM distillation losses: hand-computed values, masks, sparse targets, TAID's schedule."""

from __future__ import annotations

import math

import pytest
import torch

from distill.errors import ConfigError, DistillError
from distill.losses import (
    IGNORE_INDEX,
    LOSSES,
    DistillLoss,
    ForwardKLLoss,
    GeneralizedJSDLoss,
    ReverseKLLoss,
    SkewKLLoss,
    SkewReverseKLLoss,
    TAIDLoss,
    TokenDistillLoss,
)
from distill.losses.sparse import TopKTargets

NAMES = ["forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_reverse_kl", "taid"]
CLASSES = {
    "forward_kl": ForwardKLLoss,
    "reverse_kl": ReverseKLLoss,
    "jsd": GeneralizedJSDLoss,
    "skew_kl": SkewKLLoss,
    "skew_reverse_kl": SkewReverseKLLoss,
    "taid": TAIDLoss,
}
#: The losses that are f-divergences of (p, q), so coarse-graining the vocabulary can only lower them.
F_DIVERGENCES = ["forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_reverse_kl"]

# Two positions over a vocabulary of 3, given as probabilities: logits = log(probabilities),
# so at temperature 1 the softmaxes are exactly these numbers.
Q = [[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]]  # student
P = [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]]  # teacher


def logits(probs) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float64).log().float()


def kl(a, b) -> float:
    return sum(x * math.log(x / y) for x, y in zip(a, b) if x > 0)


def mix(a, b, w):
    return [w * x + (1 - w) * y for x, y in zip(a, b)]


def mean(values) -> float:
    return sum(values) / len(values)


def taid_target(q, p, t):
    weights = [qi ** (1 - t) * pi**t for qi, pi in zip(q, p)]
    return [w / sum(weights) for w in weights]


def loss_value(loss: DistillLoss, student, teacher, **kwargs) -> float:
    return loss(student, teacher, **kwargs).item()


# --- registry ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_registry_builds_each_loss(name):
    loss = LOSSES.build(name)
    assert type(loss) is CLASSES[name]
    assert isinstance(loss, TokenDistillLoss)
    assert loss.requires == "identical" and loss.supports_mask
    assert loss.temperature == 1.0 and loss.ce_weight == 0.0
    assert "20" in LOSSES.describe(name)  # the first doc paragraph cites a paper and year
    assert LOSSES.build(name, temperature=2.0, ce_weight=0.5).temperature == 2.0


def test_registry_passes_options():
    assert LOSSES.build("jsd", beta=0.2).beta == 0.2
    assert LOSSES.build("skew_kl", alpha=0.3).alpha == 0.3
    assert LOSSES.build("skew_reverse_kl", alpha=0.3).alpha == 0.3
    taid = LOSSES.build("taid", t_start=0.2, t_end=0.9, step_size=1e-3, momentum=0.9, adaptive=False)
    assert (taid.t_start, taid.t_end, taid.step_size, taid.momentum, taid.adaptive) == (0.2, 0.9, 1e-3, 0.9, False)
    assert taid.t.item() == pytest.approx(0.2)
    with pytest.raises(ConfigError, match="beta"):
        LOSSES.build("jsd", bta=0.2)


# --- hand-computed values ------------------------------------------------------------------


def test_forward_kl_by_hand():
    expected = mean([kl(P[i], Q[i]) for i in range(2)])
    assert loss_value(ForwardKLLoss(), logits(Q), logits(P)) == pytest.approx(expected, rel=1e-5)


def test_reverse_kl_by_hand():
    expected = mean([kl(Q[i], P[i]) for i in range(2)])
    assert loss_value(ReverseKLLoss(), logits(Q), logits(P)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("beta", [0.5, 0.2, 0.9])
def test_jsd_by_hand(beta):
    def jsd(p, q):
        m = mix(p, q, beta)  # M = β·p + (1 − β)·q: β weighs the teacher
        return beta * kl(p, m) + (1 - beta) * kl(q, m)

    expected = mean([jsd(P[i], Q[i]) for i in range(2)])
    assert loss_value(GeneralizedJSDLoss(beta=beta), logits(Q), logits(P)) == pytest.approx(expected, rel=1e-5)


def test_jsd_half_is_symmetric():
    loss = GeneralizedJSDLoss(beta=0.5)
    assert loss_value(loss, logits(Q), logits(P)) == pytest.approx(loss_value(loss, logits(P), logits(Q)), rel=1e-6)


def test_skew_kl_by_hand():
    alpha = 0.1
    expected = mean([kl(P[i], mix(P[i], Q[i], alpha)) for i in range(2)])
    assert loss_value(SkewKLLoss(alpha=alpha), logits(Q), logits(P)) == pytest.approx(expected, rel=1e-5)


def test_skew_reverse_kl_by_hand():
    # DistiLLM: SRKL_α = KL(q ‖ (1 − α)·p + α·q), the student mixed into the teacher
    alpha = 0.1
    expected = mean([kl(Q[i], mix(Q[i], P[i], alpha)) for i in range(2)])
    assert loss_value(SkewReverseKLLoss(alpha=alpha), logits(Q), logits(P)) == pytest.approx(expected, rel=1e-5)


def test_taid_by_hand():
    t = 0.4
    expected = mean([kl(taid_target(Q[i], P[i], t), Q[i]) for i in range(2)])
    assert loss_value(TAIDLoss(t_start=t), logits(Q), logits(P)) == pytest.approx(expected, rel=1e-5)


def test_temperature_divides_logits_without_t_squared():
    temp = 2.0
    s, te = logits(Q), logits(P)
    q = torch.softmax(s.double() / temp, -1).tolist()
    p = torch.softmax(te.double() / temp, -1).tolist()
    expected = mean([kl(p[i], q[i]) for i in range(2)])
    assert loss_value(ForwardKLLoss(temperature=temp), s, te) == pytest.approx(expected, rel=1e-5)


def test_zero_when_student_equals_teacher():
    x = torch.randn(2, 4, 7)
    for name in NAMES:
        assert loss_value(LOSSES.build(name), x, x.clone()) == pytest.approx(0.0, abs=1e-6), name


def test_low_precision_inputs_compute_in_float32():
    s, te = torch.randn(2, 3, 11), torch.randn(2, 3, 11)
    for name in NAMES:
        exact = LOSSES.build(name)(s.bfloat16().float(), te.bfloat16().float())
        got = LOSSES.build(name)(s.bfloat16(), te.bfloat16())
        assert got.dtype == torch.float32 and torch.isfinite(got), name
        assert got.item() == pytest.approx(exact.item(), rel=1e-5, abs=1e-7), name


# --- special cases ------------------------------------------------------------------------


def test_jsd_endpoints_are_forward_and_reverse_kl():
    s, te = torch.randn(3, 5, 13), torch.randn(3, 5, 13)
    assert GeneralizedJSDLoss(beta=0.0)(s, te).item() == pytest.approx(ForwardKLLoss()(s, te).item(), rel=1e-6)
    assert GeneralizedJSDLoss(beta=1.0)(s, te).item() == pytest.approx(ReverseKLLoss()(s, te).item(), rel=1e-6)


def test_skew_losses_at_alpha_zero_are_plain_kl():
    s, te = torch.randn(3, 5, 13), torch.randn(3, 5, 13)
    assert SkewKLLoss(alpha=0.0)(s, te).item() == pytest.approx(ForwardKLLoss()(s, te).item(), rel=1e-6)
    assert SkewReverseKLLoss(alpha=0.0)(s, te).item() == pytest.approx(ReverseKLLoss()(s, te).item(), rel=1e-6)


def test_skew_kl_is_below_forward_kl():
    # mixing the teacher into the student shrinks the divergence (convexity of KL)
    s, te = torch.randn(3, 5, 13), torch.randn(3, 5, 13)
    assert SkewKLLoss(alpha=0.3)(s, te).item() < ForwardKLLoss()(s, te).item()
    assert SkewReverseKLLoss(alpha=0.3)(s, te).item() < ReverseKLLoss()(s, te).item()


def test_taid_at_t_one_is_forward_kl():
    s, te = torch.randn(3, 5, 13), torch.randn(3, 5, 13)
    forward = ForwardKLLoss()(s, te).item()
    assert TAIDLoss(t_start=1.0)(s, te).item() == pytest.approx(forward, rel=1e-5)
    moved = TAIDLoss()
    moved.t.fill_(1.0)
    assert moved(s, te).item() == pytest.approx(forward, rel=1e-5)


def test_taid_at_t_zero_is_zero_with_zero_gradient():
    s = torch.randn(3, 5, 13, requires_grad=True)
    loss = TAIDLoss(t_start=0.0)(s, torch.randn(3, 5, 13))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert torch.allclose(s.grad, torch.zeros_like(s.grad), atol=1e-7)


def test_taid_target_is_detached():
    # with p_t fixed, d KL(p_t ‖ softmax(s)) / ds = (q − p_t) per position, divided by the positions
    s = logits(Q).requires_grad_()
    TAIDLoss(t_start=0.4)(s, logits(P)).backward()
    expected = torch.tensor([[q - pt for q, pt in zip(Q[i], taid_target(Q[i], P[i], 0.4))] for i in range(2)]) / 2
    assert torch.allclose(s.grad, expected.float(), atol=1e-6)


# --- masks and the cross-entropy term -------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_mask_leaves_positions_out(name):
    torch.manual_seed(0)
    s, te = torch.randn(2, 4, 9), torch.randn(2, 4, 9)
    mask = torch.tensor([[True, True, False, True], [False, True, True, False]])
    loss = LOSSES.build(name)
    base = loss(s, te, mask=mask)
    s2, te2 = s.clone(), te.clone()
    s2[~mask] = torch.randn(int((~mask).sum()), 9) * 10
    te2[~mask] = float("nan")  # never reaches the value
    assert loss(s2, te2, mask=mask).item() == pytest.approx(base.item(), rel=1e-6)
    # the masked mean is the mean over the kept positions alone
    assert base.item() == pytest.approx(loss(s[mask], te[mask]).item(), rel=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_all_false_mask_gives_zero(name):
    s = torch.randn(2, 3, 5, requires_grad=True)
    out = LOSSES.build(name)(s, torch.randn(2, 3, 5), mask=torch.zeros(2, 3, dtype=torch.bool))
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(s.grad, torch.zeros_like(s))


def test_ce_weight_adds_cross_entropy_on_labelled_unmasked_positions():
    s, te = logits(Q), logits(P)
    target = torch.tensor([0, 2])
    kl_part = mean([kl(P[i], Q[i]) for i in range(2)])
    ce = -mean([math.log(Q[0][0]), math.log(Q[1][2])])
    loss = ForwardKLLoss(ce_weight=0.5)
    assert loss_value(loss, s, te, target=target) == pytest.approx(kl_part + 0.5 * ce, rel=1e-5)
    # the mask leaves position 1 out of both terms
    mask = torch.tensor([True, False])
    expected = kl(P[0], Q[0]) - 0.5 * math.log(Q[0][0])
    assert loss_value(loss, s, te, target=target, mask=mask) == pytest.approx(expected, rel=1e-5)
    # unlabeled positions only drop out of the cross-entropy
    unlabeled = torch.tensor([IGNORE_INDEX, 2])
    expected = kl_part - 0.5 * math.log(Q[1][2])
    assert loss_value(loss, s, te, target=unlabeled) == pytest.approx(expected, rel=1e-5)
    # ce_weight = 0 (the default) ignores the labels
    assert loss_value(ForwardKLLoss(), s, te, target=target) == pytest.approx(kl_part, rel=1e-5)


# --- sparse top-k targets ----------------------------------------------------------------------


def top_k(teacher_logits: torch.Tensor, k: int, temperature: float = 1.0) -> TopKTargets:
    logprobs = torch.log_softmax(teacher_logits / temperature, dim=-1)
    values, indices = logprobs.topk(k, dim=-1)
    return TopKTargets(indices, values, temperature)


@pytest.mark.parametrize("name", NAMES)
def test_top_k_with_one_token_left_out_equals_dense(name):
    # k = V − 1: the tail bin is exactly the one token left out, so nothing is coarse-grained
    torch.manual_seed(1)
    s, te = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    loss = LOSSES.build(name, temperature=1.5)
    dense = loss(s, te).item()
    assert loss(s, top_k(te, 3, temperature=1.5)).item() == pytest.approx(dense, rel=1e-4, abs=1e-6)


def test_top_k_forward_kl_by_hand():
    s, te = logits(Q), logits(P)
    sparse = ForwardKLLoss()(s, top_k(te, 2)).item()
    assert sparse == pytest.approx(mean([kl(P[i], Q[i]) for i in range(2)]), rel=1e-4)


@pytest.mark.parametrize("name", F_DIVERGENCES)
@pytest.mark.parametrize("k", [1, 3])
def test_top_k_is_never_above_dense(name, k):
    # data-processing inequality: merging tokens into one bin cannot increase an f-divergence
    torch.manual_seed(2)
    s, te = torch.randn(4, 6, 10) * 2, torch.randn(4, 6, 10) * 2
    loss = LOSSES.build(name)
    dense, sparse = loss(s, te), loss(s, top_k(te, k))
    assert torch.isfinite(sparse) and 0 <= sparse.item() <= dense.item() + 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_top_k_gradients_reach_student(name):
    s = torch.randn(2, 3, 10, requires_grad=True)
    LOSSES.build(name)(s, top_k(torch.randn(2, 3, 10), 3), mask=torch.tensor([[True, False, True]] * 2)).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


# --- zeros and infinities --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["forward_kl", "jsd", "skew_kl", "skew_reverse_kl", "taid"])
def test_finite_gradient_where_teacher_probability_is_zero(name):
    s = torch.randn(2, 3, 5, requires_grad=True)
    te = torch.randn(2, 3, 5)
    te[..., 1] = float("-inf")  # the teacher never picks token 1
    te[0, 0, 3] = -1e4  # underflows to probability 0 as well
    out = LOSSES.build(name)(s, te)
    assert torch.isfinite(out)
    out.backward()
    assert torch.isfinite(s.grad).all()


def test_reverse_kl_is_infinite_not_nan_where_teacher_probability_is_zero():
    te = torch.tensor([[0.0, float("-inf"), 1.0]])
    assert ReverseKLLoss()(torch.zeros(1, 3), te).item() == math.inf


@pytest.mark.parametrize("name", NAMES)
def test_token_impossible_for_both_sides_is_ignored(name):
    # e.g. padded vocabulary entries: -inf logits on both sides contribute nothing, never NaN
    s = torch.randn(2, 4, requires_grad=True)
    te = torch.randn(2, 4)
    padded_s = torch.cat([s, torch.full((2, 1), float("-inf"))], dim=-1)
    padded_te = torch.cat([te, torch.full((2, 1), float("-inf"))], dim=-1)
    loss = LOSSES.build(name)
    out = loss(padded_s, padded_te)
    assert out.item() == pytest.approx(loss(s.detach(), te).item(), rel=1e-5)
    out.backward()
    assert torch.isfinite(s.grad).all()


def test_sparse_targets_with_zero_probability_keep_gradients_finite():
    s = torch.randn(2, 6, requires_grad=True)
    targets = TopKTargets(torch.tensor([[0, 1], [2, 3]]), torch.tensor([[-0.5, float("-inf")], [-0.1, -3.0]]))
    for name in ["forward_kl", "jsd", "skew_kl", "skew_reverse_kl", "taid"]:
        s.grad = None
        out = LOSSES.build(name)(s, targets)
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(s.grad).all(), name


# --- TAID's schedule --------------------------------------------------------------------------


def test_taid_first_update_only_records_the_loss():
    taid = TAIDLoss()
    taid.update(2.0, progress=0.0)
    assert taid.t.item() == pytest.approx(0.4)
    assert taid.prev_loss.item() == 2.0 and taid.smoothed_improvement.item() == 0.0


def test_taid_update_follows_the_official_rule():
    taid = TAIDLoss(t_start=0.4, step_size=5e-4, momentum=0.99)
    taid.update(2.0, progress=0.0)
    taid.update(1.5, progress=0.0)
    m = 0.01 * (2.0 - 1.5) / 2.0
    t = 0.4 + 5e-4 / (1 + math.exp(-m)) * (1 - 0.4)
    assert taid.smoothed_improvement.item() == pytest.approx(m, rel=1e-6)
    assert taid.t.item() == pytest.approx(t, rel=1e-6)
    taid.update(1.8, progress=0.0)  # a worse loss: the momentum falls, t still grows
    m2 = 0.99 * m + 0.01 * (1.5 - 1.8) / 1.5
    assert taid.smoothed_improvement.item() == pytest.approx(m2, rel=1e-5)
    assert taid.t.item() == pytest.approx(t + 5e-4 / (1 + math.exp(-m2)) * (1 - t), rel=1e-6)


def test_taid_t_is_monotonic_bounded_and_above_the_linear_schedule():
    torch.manual_seed(3)
    taid = TAIDLoss(t_start=0.3, t_end=0.9, step_size=0.05)
    steps, previous = 200, taid.t.item()
    for step in range(steps + 1):
        progress = step / steps
        taid.update(1.0 + torch.rand(()).item(), progress)  # noisy losses, up and down
        t = taid.t.item()
        assert previous - 1e-7 <= t <= 0.9 + 1e-7
        if step > 0:
            assert t >= 0.3 + 0.6 * progress - 1e-6
        previous = t
    assert taid.t.item() == pytest.approx(0.9)


def test_taid_adaptive_steps_move_ahead_of_the_schedule():
    taid = TAIDLoss(t_start=0.4, step_size=0.1)
    for step in range(20):
        taid.update(1.0 / (step + 1), progress=0.0)  # steadily improving
    assert taid.t.item() > 0.5
    linear = TAIDLoss(t_start=0.4, step_size=0.1, adaptive=False)
    for step in range(20):
        linear.update(1.0 / (step + 1), progress=0.0)
    assert linear.t.item() == pytest.approx(0.4)
    linear.update(0.01, progress=0.5)
    assert linear.t.item() == pytest.approx(0.7)


def test_taid_state_is_checkpointed():
    taid = TAIDLoss()
    taid.update(2.0, 0.0)
    taid.update(1.0, 0.25)
    state = taid.state_dict()
    assert set(state) == {"t", "prev_loss", "smoothed_improvement"}
    restored = TAIDLoss()
    restored.load_state_dict(state)
    assert restored.t.item() == taid.t.item() == pytest.approx(0.55)
    assert restored.prev_loss.item() == 1.0
    assert restored.smoothed_improvement.item() == taid.smoothed_improvement.item() != 0.0


def test_taid_update_rejects_bad_values():
    taid = TAIDLoss()
    with pytest.raises(DistillError, match="finite"):
        taid.update(float("nan"), 0.5)
    with pytest.raises(DistillError, match="progress"):
        taid.update(1.0, 1.5)
    assert taid.t.item() == pytest.approx(0.4) and math.isinf(taid.prev_loss.item())


# --- bad inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_shape_mismatch_is_reported(name):
    with pytest.raises(DistillError, match="shapes must match"):
        LOSSES.build(name)(torch.randn(2, 3, 5), torch.randn(2, 3, 6))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_temperature_must_be_positive(name, temperature):
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        LOSSES.build(name, temperature=temperature)


@pytest.mark.parametrize("name", NAMES)
def test_negative_ce_weight_is_refused(name):
    with pytest.raises(ConfigError, match="ce_weight"):
        LOSSES.build(name, ce_weight=-0.1)


@pytest.mark.parametrize("beta", [-0.1, 1.5])
def test_beta_outside_unit_interval_is_refused(beta):
    with pytest.raises(ConfigError, match=r"beta must lie in \[0, 1\]"):
        GeneralizedJSDLoss(beta=beta)


@pytest.mark.parametrize("name", ["skew_kl", "skew_reverse_kl"])
@pytest.mark.parametrize("alpha", [-0.1, 1.0, 2.0])
def test_skew_alpha_outside_range_is_refused(name, alpha):
    with pytest.raises(ConfigError, match=r"alpha must lie in \[0, 1\)"):
        LOSSES.build(name, alpha=alpha)


@pytest.mark.parametrize(
    "options, field",
    [({"t_start": 0.8, "t_end": 0.5}, "t_start"), ({"t_start": -0.1}, "t_start"), ({"t_end": 1.2}, "t_end"),
     ({"momentum": 1.0}, "momentum"), ({"step_size": -1e-3}, "step_size")],
)
def test_taid_options_are_checked(options, field):
    with pytest.raises(ConfigError, match=field):
        TAIDLoss(**options)


@pytest.mark.parametrize("name", NAMES)
def test_bad_masks_are_refused(name):
    loss, s = LOSSES.build(name), torch.randn(2, 3, 5)
    with pytest.raises(DistillError, match="mask must be a bool tensor"):
        loss(s, s.clone(), mask=torch.ones(2, 3))
    with pytest.raises(DistillError, match=r"mask must be a bool tensor of shape \(2, 3\)"):
        loss(s, s.clone(), mask=torch.ones(2, 5, dtype=torch.bool))


def test_top_k_temperature_mismatch_is_refused():
    s, te = torch.randn(2, 3, 6), torch.randn(2, 3, 6)
    with pytest.raises(DistillError, match="temperature 2.0"):
        ForwardKLLoss(temperature=1.0)(s, top_k(te, 2, temperature=2.0))


def test_top_k_shape_mismatch_is_refused():
    with pytest.raises(DistillError, match="do not match top-k targets"):
        ForwardKLLoss()(torch.randn(2, 4, 6), top_k(torch.randn(2, 3, 6), 2))


def test_teacher_of_wrong_kind_is_refused():
    with pytest.raises(DistillError, match="TopKTargets"):
        ForwardKLLoss()(torch.randn(2, 3), [[0.0, 1.0, 2.0]] * 2)


def test_bad_labels_are_refused():
    with pytest.raises(DistillError, match="labels must lie"):
        ForwardKLLoss(ce_weight=1.0)(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 7]))


def test_top_k_tail_of_an_over_confident_student_over_a_large_vocabulary():
    # 5,000 tokens, k = 32: the student's tail is ~3e-6, the teacher's 0.35 (issue 26)
    vocabulary, k = 5000, 32
    indices = torch.arange(k).unsqueeze(0)
    s = torch.zeros(1, vocabulary, dtype=torch.float64)
    s[0, :k] = math.log((vocabulary - k) / 3e-6 / k)
    teacher = torch.log(torch.full((1, k), 0.65 / k, dtype=torch.float64) * torch.linspace(0.5, 1.5, k))
    targets = TopKTargets(indices, teacher.float())
    q = torch.softmax(s, dim=-1)[0]
    q_bins = torch.cat([q[:k], q[k:].sum().unsqueeze(0)])
    p_bins = torch.cat([teacher.exp()[0], (1 - teacher.exp().sum()).unsqueeze(0)])
    exact = float((p_bins * (p_bins / q_bins).log()).sum())
    student = s.float().requires_grad_(True)
    loss = ForwardKLLoss()(student, targets)
    assert loss.item() == pytest.approx(exact, rel=1e-4)
    loss.backward()
    # d loss / d logit_j summed over the tail tokens is q_tail − p_tail: it must push mass back into the tail
    assert student.grad[0, k:].sum().item() == pytest.approx(float(q_bins[-1] - p_bins[-1]), rel=1e-3)


def reference_bins(student_logits, targets, temperature):
    """The k + 1 bins as plain autograd computes them in float64: log-softmax, gather, log-sum-exp of the rest."""
    log_all = torch.log_softmax(student_logits.double() / temperature, dim=-1)
    log_rest = torch.logsumexp(log_all.scatter(-1, targets.indices, float("-inf")), dim=-1, keepdim=True)
    log_q = torch.cat([log_all.gather(-1, targets.indices), log_rest.clamp(min=math.log(1e-12))], dim=-1)
    log_p = torch.cat([targets.logprobs.double(), targets.tail_mass().double().clamp(min=1e-12).log().unsqueeze(-1)], -1)
    return log_q, log_p


@pytest.mark.parametrize("name", ["forward_kl", "reverse_kl", "jsd"])
def test_top_k_student_bins_match_plain_autograd_in_float64(name):
    torch.manual_seed(4)
    s = torch.randn(3, 5, 300) * 3
    s[0, 0, :4] = 40.0  # a tail below the floor: its bin is floored and carries no gradient
    s[1, 2, 100:] = float("-inf")  # padded vocabulary entries
    teacher = torch.randn(3, 5, 300).log_softmax(-1)
    values, indices = teacher.topk(4, dim=-1)
    indices[0, 0] = torch.arange(4)
    targets = TopKTargets(indices, values, temperature=2.0)
    student = s.clone().requires_grad_(True)
    loss = LOSSES.build(name, temperature=2.0)
    got = loss(student, targets)
    got.backward()
    reference = s.double().requires_grad_(True)
    expected = loss.divergence(*reference_bins(reference, targets, 2.0)).mean()
    expected.backward()
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(student.grad.double(), reference.grad, atol=1e-7, rtol=1e-5)


def test_top_k_loss_keeps_one_vocabulary_sized_tensor_for_backward_as_cross_entropy_does():
    torch.manual_seed(5)
    vocabulary = 500
    teacher = torch.randn(64, vocabulary).log_softmax(-1)
    targets = TopKTargets(*reversed(teacher.topk(8, dim=-1)))
    labels = torch.randint(0, vocabulary, (64,))

    def kept(loss):
        storages = set()

        def pack(tensor):
            if tensor.shape[-1:] == (vocabulary,):
                storages.add(tensor.untyped_storage().data_ptr())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss(torch.randn(64, vocabulary, requires_grad=True)).backward()
        return len(storages)

    from distill.losses import masked_cross_entropy

    assert kept(lambda s: masked_cross_entropy(s, labels)) == 1
    assert kept(lambda s: ForwardKLLoss()(s, targets)) == 1
    assert kept(lambda s: ForwardKLLoss(ce_weight=1.0)(s, targets, labels)) == 1  # no second log-softmax


@pytest.mark.parametrize("sparse", [False, True])
def test_cross_entropy_share_reads_the_divergences_log_probabilities_with_the_same_value_and_gradient(sparse):
    torch.manual_seed(6)
    s, te = torch.randn(2, 5, 50) * 2, torch.randn(2, 5, 50)
    teacher = top_k(te, 6) if sparse else te
    labels = torch.randint(0, 50, (2, 5))
    labels[0, 1] = IGNORE_INDEX
    labels[0, 0] = te[0, 0].argmax()  # a label among the listed tokens (the others mostly fall in the tail)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    shared = s.clone().requires_grad_(True)
    ForwardKLLoss(ce_weight=0.7)(shared, teacher, labels, mask=mask).backward()
    separate = s.clone().requires_grad_(True)
    from distill.losses import masked_cross_entropy

    expected = ForwardKLLoss()(separate, teacher, mask=mask) + 0.7 * masked_cross_entropy(
        separate, labels.masked_fill(~mask, IGNORE_INDEX))
    expected.backward()
    assert ForwardKLLoss(ce_weight=0.7)(s, teacher, labels, mask=mask).item() == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(shared.grad, separate.grad, atol=1e-7, rtol=1e-5)
