"""DIST and logit-standardised KD against hand-computed values, plus their key properties."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from reference import kl, softmax, t

from distill.errors import ConfigError, DistillError
from distill.losses.base import IGNORE_INDEX, LOSSES, DistillLoss
from distill.losses.dist import DISTLoss, pearson_correlation
from distill.losses.logit_standardization import LogitStandardizedKDLoss, standardize_logits

LOGIT_LOSSES = {"dist": DISTLoss, "lskd": LogitStandardizedKDLoss}

# 3 samples x 4 classes.
S = np.array([[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 3.0, 1.0], [2.0, 2.5, -0.5, 0.0]])
T_ = np.array([[2.0, 1.0, 0.0, -0.5], [1.0, 0.5, 2.5, 0.0], [0.5, 3.0, 1.0, -1.0]])


# --- registry and shared contract -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
def test_registered_with_paper_docstring(name):
    assert name in LOSSES
    cls = LOSSES.get(name)
    assert cls is LOGIT_LOSSES[name]
    assert issubclass(cls, DistillLoss)
    assert cls.requires == "identical"
    assert not cls.needs_target
    assert re.search(r"\b20(22|24)\b", LOSSES.describe(name)), "first doc line must cite the paper and year"


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
def test_fp16_inputs_give_float32_scalar(name):
    s, te = torch.randn(6, 5).half(), torch.randn(6, 5).half()
    loss = LOSSES.build(name)(s, te)
    assert loss.dtype == torch.float32
    assert loss.dim() == 0
    assert torch.isfinite(loss)


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
def test_shape_mismatch_names_both_shapes(name):
    with pytest.raises(DistillError, match=r"\(2, 3\).*\(2, 4\)"):
        LOSSES.build(name)(torch.randn(2, 3), torch.randn(2, 4))


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
def test_non_positive_temperature_is_rejected(name):
    with pytest.raises(ConfigError, match="temperature"):
        LOSSES.build(name, temperature=0.0)


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
def test_token_logits_equal_flattened_rows(name):
    s, te = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    loss = LOSSES.build(name)
    assert loss(s, te).item() == pytest.approx(loss(s.reshape(6, 5), te.reshape(6, 5)).item(), rel=1e-6)


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
def test_gradient_reaches_student_only_input(name):
    s = torch.randn(4, 5, requires_grad=True)
    LOSSES.build(name)(s, torch.randn(4, 5)).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


# --- DIST -------------------------------------------------------------------------------


def test_dist_matches_hand_computation():
    temp, beta, gamma = 2.0, 0.5, 2.0
    p_s, p_t = softmax(S / temp), softmax(T_ / temp)
    inter = 1 - np.mean([np.corrcoef(p_s[i], p_t[i])[0, 1] for i in range(3)])
    intra = 1 - np.mean([np.corrcoef(p_s[:, j], p_t[:, j])[0, 1] for j in range(4)])
    expected = temp**2 * (beta * inter + gamma * intra)
    got = DISTLoss(beta=beta, gamma=gamma, temperature=temp)(t(S), t(T_))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_pearson_correlation_by_explicit_arithmetic():
    # a = [1, 2, 3] centred is [-1, 0, 1]; b = [2, 0, 1] centred is [1, -1, 0]: r = -1 / (√2·√2).
    r = pearson_correlation(t([1.0, 2.0, 3.0]), t([2.0, 0.0, 1.0]), dim=0)
    assert r.item() == pytest.approx(-0.5, rel=1e-6)


def test_dist_zero_when_student_equals_teacher():
    logits = torch.randn(8, 5)
    assert DISTLoss(temperature=4.0)(logits, logits.clone()).item() == pytest.approx(0.0, abs=1e-5)


def test_dist_invariant_to_per_row_constant():
    s, te = torch.randn(6, 5), torch.randn(6, 5)
    shift = 10.0 * torch.randn(6, 1)
    loss = DISTLoss(beta=1.0, gamma=2.0, temperature=1.0)
    assert loss(s + shift, te).item() == pytest.approx(loss(s, te).item(), rel=1e-4)


@pytest.mark.parametrize("temp", [1.0, 3.0])
@pytest.mark.parametrize(("beta", "gamma"), [(1.0, 1.0), (0.5, 2.0)])
def test_dist_bounded(temp, beta, gamma):
    loss = DISTLoss(beta=beta, gamma=gamma, temperature=temp)
    upper = 4 * temp**2 * max(beta, gamma)
    s = 5.0 * torch.randn(16, 6)
    for te in (5.0 * torch.randn(16, 6), -s, s):
        value = loss(s, te).item()
        assert 0.0 <= value + 1e-5 and value <= upper
    # Anti-correlated predictions come close to the upper end of each term (2 each).
    assert loss(s, -s).item() > temp**2 * (beta + gamma)


def test_dist_zero_variance_is_finite():
    # Equal logits give a uniform row (no variance across classes); one sample gives
    # columns with no variance across the batch. Both count as correlation 0.
    loss = DISTLoss(beta=1.0, gamma=1.0)
    equal = loss(torch.zeros(4, 5), torch.randn(4, 5))
    single = loss(torch.randn(1, 5), torch.randn(1, 5))
    assert torch.isfinite(equal) and torch.isfinite(single)
    one = torch.randn(1, 5)
    assert loss(one, one.clone()).item() == pytest.approx(1.0, abs=1e-5)  # inter 0, intra 1


# --- logit-standardised KD --------------------------------------------------------------


def zscore(v: np.ndarray) -> np.ndarray:
    return (v - v.mean(axis=-1, keepdims=True)) / (v.std(axis=-1, ddof=1, keepdims=True) + 1e-7)


def test_standardize_logits_by_explicit_arithmetic():
    # [1, 2, 3]: mean 2, sample std √((1 + 0 + 1) / 2) = 1.
    z = standardize_logits(t([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]]))
    np.testing.assert_allclose(z.numpy(), [[-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]], atol=1e-6)
    assert standardize_logits(torch.randn(2, 5).half()).dtype == torch.float32


def test_lskd_matches_hand_computation():
    temp, alpha, y = 2.0, 0.3, [2, 0, IGNORE_INDEX]
    soft = temp**2 * kl(softmax(zscore(T_) / temp), softmax(zscore(S) / temp)).mean()
    hard = -np.mean([np.log(softmax(S[i])[y[i]]) for i in range(2)])  # raw logits, labelled rows
    expected = alpha * soft + (1 - alpha) * hard
    got = LogitStandardizedKDLoss(temperature=temp, alpha=alpha)(t(S), t(T_), torch.tensor(y))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_lskd_soft_term_only_without_target():
    temp = 3.0
    expected = temp**2 * kl(softmax(zscore(T_) / temp), softmax(zscore(S) / temp)).mean()
    got = LogitStandardizedKDLoss(temperature=temp, alpha=0.5)(t(S), t(T_))
    assert got.item() == pytest.approx(0.5 * expected, rel=1e-5)


def test_lskd_invariant_to_positive_affine_student():
    s, te = torch.randn(6, 10), torch.randn(6, 10)
    scale = torch.rand(6, 1) * 5 + 0.1
    shift = 10.0 * torch.randn(6, 1)
    loss = LogitStandardizedKDLoss(temperature=2.0)
    assert loss(scale * s + shift, te).item() == pytest.approx(loss(s, te).item(), rel=1e-4)


def test_lskd_zero_for_identical_standardised_logits():
    s = torch.randn(6, 10)
    te = 3.0 * s - 7.0  # differs in scale and offset, not in shape
    assert LogitStandardizedKDLoss(temperature=2.0)(s, te).item() == pytest.approx(0.0, abs=1e-5)
    # A different shape (the reversed ranking) is not ignored.
    assert LogitStandardizedKDLoss(temperature=2.0)(s, -te).item() > 1.0


def test_lskd_needs_two_classes():
    with pytest.raises(DistillError, match=r"at least 2 classes.*\(3, 1\)"):
        LogitStandardizedKDLoss()(torch.randn(3, 1), torch.randn(3, 1))


# --- masks ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
def test_mask_equals_the_loss_on_unmasked_positions(name):
    s, te = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    mask = torch.tensor([[True, True, False, True], [True, False, True, True]])
    loss = LOSSES.build(name)
    assert LOSSES.get(name).supports_mask
    assert torch.allclose(loss(s, te, mask=mask), loss(s[mask], te[mask]), atol=1e-6)


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
def test_padded_garbage_does_not_count(name):
    s, te = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1, 3] = False
    garbage_s, garbage_te = s.clone(), te.clone()
    garbage_s[1, 3], garbage_te[1, 3] = torch.tensor([9e3, -9e3, 0.0, 1.0, 5.0]), torch.full((5,), -7e3)
    loss = LOSSES.build(name)
    assert torch.allclose(loss(s, te, mask=mask), loss(garbage_s, garbage_te, mask=mask), atol=1e-6)


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
def test_everything_masked_gives_zero(name):
    s = torch.randn(2, 3, 5, requires_grad=True)
    loss = LOSSES.build(name)(s, torch.randn(2, 3, 5), mask=torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
