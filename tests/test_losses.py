"""The first five losses against hand-computed values, plus their key properties."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from reference import kl, softmax, t

from distill.errors import ConfigError, DistillError
from distill.losses import (
    IGNORE_INDEX,
    LOSSES,
    AttentionTransferLoss,
    DistillLoss,
    DKDLoss,
    FitNetLoss,
    KDLoss,
    SimilarityPreservingLoss,
    masked_cross_entropy,
)
from distill.registry import Registry

NAMES = ["kd", "dkd", "fitnet", "at", "sp"]


S = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
T_ = np.array([[2.0, 1.0, 0.0], [1.0, 0.5, 2.5]])


# --- registry ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOSSES.names())
def test_registered_with_paper_docstring(name):
    cls = LOSSES.get(name)
    assert issubclass(cls, DistillLoss)
    assert cls.requires in {"identical", "same_shape", "same_spatial", "same_positions", "same_batch", "multi_level"}
    assert re.search(r"\b(19|20)\d\d\b", LOSSES.describe(name)), "first doc line must cite a paper and year"


# --- KD ---------------------------------------------------------------------------------


def test_kd_matches_hand_computation():
    temp, alpha, y = 2.0, 0.3, [2, 0]
    soft = temp**2 * kl(softmax(T_ / temp), softmax(S / temp)).mean()
    hard = -np.mean([np.log(softmax(S[i])[y[i]]) for i in range(2)])
    expected = alpha * soft + (1 - alpha) * hard
    got = KDLoss(temperature=temp, alpha=alpha)(t(S), t(T_), torch.tensor(y))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_kd_zero_when_student_equals_teacher():
    logits = torch.randn(4, 7)
    assert KDLoss(temperature=3.0)(logits, logits.clone()).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("temp", [1.0, 4.0, 10.0])
def test_kd_gradient_follows_t_squared_convention(temp):
    # d/ds [T² KL] = T (softmax(s/T) − softmax(t/T)) / B: the T² undoes the 1/T² shrinkage.
    s = t(S).requires_grad_()
    KDLoss(temperature=temp)(s, t(T_)).backward()
    expected = temp * (softmax(S / temp) - softmax(T_ / temp)) / 2
    np.testing.assert_allclose(s.grad.numpy(), expected, rtol=1e-4, atol=1e-7)


def test_kd_gradient_at_high_temperature_is_logit_matching():
    # Hinton et al. §2.1: for large T and zero-mean logits the gradient tends to (s − t) / (C·B).
    s0, t0 = S - S.mean(1, keepdims=True), T_ - T_.mean(1, keepdims=True)
    s = t(s0).requires_grad_()
    KDLoss(temperature=1000.0)(s, t(t0)).backward()
    np.testing.assert_allclose(s.grad.numpy(), (s0 - t0) / (3 * 2), rtol=1e-2)


def test_kd_hard_term_is_zero_without_labels():
    soft_only = 0.5 * KDLoss(alpha=1.0)(t(S), t(T_))
    kd = KDLoss(alpha=0.5)
    assert kd(t(S), t(T_)).item() == pytest.approx(soft_only.item())
    all_ignored = torch.full((2,), IGNORE_INDEX)
    assert kd(t(S), t(T_), all_ignored).item() == pytest.approx(soft_only.item())


def test_kd_shape_mismatch_names_both_shapes():
    with pytest.raises(DistillError, match=r"\(2, 3\).*\(2, 4\).*projector"):
        KDLoss()(torch.zeros(2, 3), torch.zeros(2, 4))


# --- masked cross-entropy ------------------------------------------------------------------


def test_masked_cross_entropy_skips_ignored_rows():
    logits = np.array([[1.0, 2.0, 0.5], [9.0, -9.0, 0.0], [0.0, -1.0, 3.0]])
    expected = -(np.log(softmax(logits[0])[1]) + np.log(softmax(logits[2])[0])) / 2
    got = masked_cross_entropy(t(logits), torch.tensor([1, IGNORE_INDEX, 0]))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_masked_cross_entropy_all_ignored_is_zero_not_nan():
    logits = torch.randn(3, 4, requires_grad=True)
    loss = masked_cross_entropy(logits, torch.full((3,), IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros(3, 4))


def test_masked_cross_entropy_rejects_bad_labels():
    with pytest.raises(DistillError, match="IGNORE_INDEX"):
        masked_cross_entropy(torch.zeros(2, 3), torch.tensor([0, -1]))
    with pytest.raises(DistillError, match=r"\(2,\)"):
        masked_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1, 2]))


# --- DKD --------------------------------------------------------------------------------


def dkd_by_hand(s, te, y, alpha, beta, temp):
    total = 0.0
    for i, c in enumerate(y):
        ps, pt = softmax(s[i] / temp), softmax(te[i] / temp)
        tckd = kl(np.array([pt[c], 1 - pt[c]]), np.array([ps[c], 1 - ps[c]]))
        rest = [k for k in range(len(ps)) if k != c]
        nckd = kl(pt[rest] / pt[rest].sum(), ps[rest] / ps[rest].sum())
        total += temp**2 * (alpha * tckd + beta * nckd)
    return total / len(y)


def test_dkd_matches_direct_formula():
    expected = dkd_by_hand(S, T_, [1, 2], alpha=1.0, beta=8.0, temp=4.0)
    got = DKDLoss(alpha=1.0, beta=8.0, temperature=4.0)(t(S), t(T_), torch.tensor([1, 2]))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_dkd_terms_recompose_kd():
    # Zhao et al. eq. (1): KD = TCKD + (1 − p_target of the teacher) · NCKD, per sample.
    s, te, y, temp = t(S[:1]), t(T_[:1]), torch.tensor([0]), 2.0
    tckd = DKDLoss(alpha=1.0, beta=0.0, temperature=temp)(s, te, y)
    nckd = DKDLoss(alpha=0.0, beta=1.0, temperature=temp)(s, te, y)
    teacher_target_prob = softmax(T_[0] / temp)[0]
    kd = KDLoss(temperature=temp)(s, te)
    assert kd.item() == pytest.approx((tckd + (1 - teacher_target_prob) * nckd).item(), rel=1e-5)


def test_dkd_excludes_unlabeled_samples():
    dkd = DKDLoss()
    mixed = dkd(t(S), t(T_), torch.tensor([1, IGNORE_INDEX]))
    assert mixed.item() == pytest.approx(dkd(t(S[:1]), t(T_[:1]), torch.tensor([1])).item(), rel=1e-6)
    none = dkd(t(S), t(T_), torch.full((2,), IGNORE_INDEX))
    assert none.item() == 0.0


def test_dkd_without_target_suggests_kd():
    with pytest.raises(DistillError, match="needs class labels.*'kd'"):
        DKDLoss()(t(S), t(T_))


# --- FitNet -----------------------------------------------------------------------------


def test_fitnet_matches_hand_computation():
    s, te = [[1.0, 2.0], [3.0, 4.0]], [[0.0, 2.0], [5.0, 1.0]]
    expected = (1 + 0 + 4 + 9) / 4
    assert FitNetLoss()(t(s), t(te)).item() == pytest.approx(expected)


# --- attention transfer -----------------------------------------------------------------


def test_at_matches_hand_computation():
    s = np.array([[[1.0, -2.0, 0.0], [3.0, 1.0, 1.0]]])  # (B=1, C=2, L=3)
    te = np.array([[[0.0, 1.0, 2.0]]])  # (B=1, C=1, L=3): channel counts may differ
    a_s = (s**2).mean(axis=1)[0]
    a_t = (te**2).mean(axis=1)[0]
    expected = np.mean((a_s / np.linalg.norm(a_s) - a_t / np.linalg.norm(a_t)) ** 2)
    assert AttentionTransferLoss()(t(s), t(te)).item() == pytest.approx(expected, rel=1e-5)


def test_at_general_p_and_2d_maps_flatten_spatially():
    s, te = torch.randn(2, 3, 4, 5), torch.randn(2, 6, 4, 5)
    at = AttentionTransferLoss(p=3.0)
    a_s = s.abs().pow(3).mean(1).reshape(2, -1)
    a_t = te.abs().pow(3).mean(1).reshape(2, -1)
    expected = (a_s / a_s.norm(dim=1, keepdim=True) - a_t / a_t.norm(dim=1, keepdim=True)).pow(2).mean()
    assert at(s, te).item() == pytest.approx(expected.item(), rel=1e-5)


def test_at_invariant_to_positive_scale():
    s, te = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    at = AttentionTransferLoss()
    assert at(7.0 * s, 0.2 * te).item() == pytest.approx(at(s, te).item(), rel=1e-5)


def test_at_spatial_mismatch_names_both_shapes():
    with pytest.raises(DistillError, match=r"\(2, 3, 4, 4\).*\(2, 5, 8, 8\).*resize"):
        AttentionTransferLoss()(torch.zeros(2, 3, 4, 4), torch.zeros(2, 5, 8, 8))


# --- similarity-preserving --------------------------------------------------------------


def test_sp_matches_hand_computation():
    fs = np.array([[1.0, 0.0], [1.0, 1.0]])
    ft = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]])  # feature sizes may differ

    def g(f):
        gram = f @ f.T
        return gram / np.linalg.norm(gram, axis=1, keepdims=True)

    expected = ((g(fs) - g(ft)) ** 2).sum() / 2**2
    assert SimilarityPreservingLoss()(t(fs), t(ft)).item() == pytest.approx(expected, rel=1e-5)


def test_sp_zero_for_identical_and_scale_invariant():
    sp = SimilarityPreservingLoss()
    s, te = torch.randn(4, 3, 2, 2), torch.randn(4, 10)
    assert sp(s, s.clone()).item() == pytest.approx(0.0, abs=1e-7)
    assert sp(3.0 * s, 0.5 * te).item() == pytest.approx(sp(s, te).item(), rel=1e-5)


# --- shared behaviour -------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_batch_mismatch_names_both_shapes(name):
    s, te = torch.zeros(2, 3, 4), torch.zeros(5, 3, 4)
    with pytest.raises(DistillError, match=r"\(2, 3, 4\).*\(5, 3, 4\)"):
        LOSSES.build(name)(s, te, torch.zeros(2, 3, dtype=torch.long))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_computed_in_float32(name, dtype):
    s, te, y = torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.tensor([[0, 1, 2], [3, 0, 1]])
    loss = LOSSES.build(name)
    low = loss(s.to(dtype), te.to(dtype), y)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(loss(s.to(dtype).float(), te.to(dtype).float(), y).item(), rel=1e-6)


def test_vkd_standardises_the_teacher_by_hand():
    from distill.losses.vkd import VkDLoss

    teacher = torch.tensor([[1.0, 10.0], [3.0, 30.0]])
    student = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    # per feature over the batch: mean (2, 20), std (1, 10) -> standardised [[-1, -1], [1, 1]]
    # smooth-L1 of |0 - (±1)| = 1 -> 1 - 0.5 = 0.5 for every element
    assert VkDLoss()(student, teacher).item() == pytest.approx(0.5, abs=1e-4)
    assert VkDLoss.projector == "orthogonal" and "vkd" in LOSSES


def test_ofa_by_hand():
    from distill.losses.ofa import OFALoss

    s = torch.tensor([[1.0, 0.0, -1.0]])
    t = torch.tensor([[0.0, 1.0, 0.0]])
    y = torch.tensor([1])
    log_ps = np.log(np.exp([1.0, 0.0, -1.0]) / np.exp([1.0, 0.0, -1.0]).sum())
    pt = np.exp([0.0, 1.0, 0.0]) / np.exp([0.0, 1.0, 0.0]).sum()
    w = pt**2  # eps = 2: non-target weights p_t^2, the target class (p_t + 1)^2 - 1
    w[1] = (pt[1] + 1) ** 2 - 1
    assert OFALoss(eps=2.0)(s, t, y).item() == pytest.approx(-(w * log_ps).sum(), rel=1e-5)
    soft_ce = -(pt * log_ps).sum()
    assert OFALoss(eps=1.0)(s, t, y).item() == pytest.approx(soft_ce, rel=1e-5)
    with pytest.raises(DistillError, match="needs labels"):
        OFALoss()(s, t)


# --- build-time option checks -----------------------------------------------------------


@pytest.mark.parametrize("name", ["kd", "lskd"])
@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_outside_unit_interval_is_refused(name, alpha):
    with pytest.raises(ConfigError, match=r"alpha.*\[0, 1\]"):
        LOSSES.build(name, alpha=alpha)


def test_misspelt_option_suggests_the_closest_and_lists_all():
    with pytest.raises(ConfigError) as err:
        LOSSES.build("kd", temprature=2)
    message = str(err.value)
    assert "'temprature'" in message and "Did you mean 'temperature'" in message
    assert "temperature" in message and "alpha" in message


def test_option_of_a_factory_without_options():
    registry = Registry("widget")
    registry.register("plain")(lambda: 1)
    with pytest.raises(ConfigError, match="'plain': it takes no options, got 'size'"):
        registry.build("plain", size=2)
    with pytest.raises(DistillError, match="'weight'"):  # nn.Module's own __init__ takes **kwargs
        LOSSES.build("fitnet", weight=2)


def test_factory_with_var_kwargs_falls_back_to_its_type_error():
    registry = Registry("widget")

    @registry.register("w")
    def make(size: int, **kwargs):
        if kwargs:
            raise TypeError(f"unexpected {sorted(kwargs)}")
        return size

    assert registry.build("w", size=3) == 3
    with pytest.raises(DistillError, match=r"unexpected \['colour'\]"):
        registry.build("w", size=3, colour="red")


# --- masks ------------------------------------------------------------------------------


def test_kd_mask_averages_over_unmasked_positions_only():
    s, t_, y = torch.randn(2, 3, 5), torch.randn(2, 3, 5), torch.randint(0, 5, (2, 3))
    mask = torch.tensor([[True, True, False], [True, True, False]])
    kd = KDLoss(temperature=2.0, alpha=0.6)
    assert torch.allclose(kd(s, t_, y, mask=mask), kd(s[:, :2], t_[:, :2], y[:, :2]), atol=1e-6)


def test_kd_padded_position_with_garbage_does_not_count():
    s, t_ = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    kd = KDLoss(temperature=3.0)
    garbage_s, garbage_t = s.clone(), t_.clone()
    garbage_s[0, 3], garbage_t[0, 3] = 1e4, -1e4
    assert torch.allclose(kd(s, t_, mask=mask), kd(garbage_s, garbage_t, mask=mask), atol=1e-6)
    assert not torch.allclose(kd(s, t_), kd(garbage_s, garbage_t))
    soft = torch.cat([s[0, :3], s[1]]), torch.cat([t_[0, :3], t_[1]])
    assert torch.allclose(kd(s, t_, mask=mask), kd(*soft), atol=1e-6)


def test_kd_mask_of_wrong_shape_or_dtype_is_refused():
    s = torch.randn(2, 3, 5)
    with pytest.raises(DistillError, match=r"mask.*\(2, 3\)"):
        KDLoss()(s, s.clone(), mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(DistillError, match="bool"):
        KDLoss()(s, s.clone(), mask=torch.ones(2, 3))


def test_which_losses_support_masks():
    assert KDLoss.supports_mask and not FitNetLoss.supports_mask and not DistillLoss.supports_mask
