"""The closed-form token divergences (losses/closed_form.py) give the autograd path's values and gradients."""

from __future__ import annotations

import pytest
import torch

from distill.losses import LOSSES, closed_form
from distill.losses.base import IGNORE_INDEX


def batch(vocabulary: int = 40):
    torch.manual_seed(0)
    student = (torch.randn(3, 5, vocabulary) * 4).requires_grad_()
    teacher = torch.randn(3, 5, vocabulary) * 4
    teacher[0, 0, 3] = 60.0  # a near one-hot teacher row: most of its probabilities underflow to 0
    labels = torch.randint(vocabulary, (3, 5))
    labels[1, 2] = IGNORE_INDEX
    return student, teacher, torch.rand(3, 5) > 0.3, labels


def value_and_grad(loss, student, teacher, labels, mask):
    value = loss(student, teacher, labels, mask=mask)
    return value, torch.autograd.grad(value, student)[0]


@pytest.mark.parametrize(("name", "options"), [("forward_kl", {}), ("reverse_kl", {}), ("jsd", {"beta": 0.5}),
                                               ("jsd", {"beta": 0.1}), ("jsd", {"beta": 0.0}), ("jsd", {"beta": 1.0})])
@pytest.mark.parametrize(("temperature", "ce_weight"), [(1.0, 0.0), (1.0, 0.7), (2.0, 0.0)])
def test_closed_form_equals_autograd(name, options, temperature, ce_weight, monkeypatch):
    student, teacher, mask, labels = batch()
    labels = labels if ce_weight else None
    loss = LOSSES.build(name, temperature=temperature, ce_weight=ce_weight, **options)
    calls = []
    apply = closed_form.DenseDivergence.apply
    monkeypatch.setattr(closed_form.DenseDivergence, "apply", lambda *a: calls.append(1) or apply(*a))
    fast, fast_grad = value_and_grad(loss, student, teacher, labels, mask)
    assert calls, "the dense teacher did not take the closed form"
    monkeypatch.setattr(closed_form, "applies", lambda *args: False)  # the autograd path through divergence()
    slow, slow_grad = value_and_grad(loss, student, teacher, labels, mask)
    assert torch.allclose(fast, slow, rtol=1e-5, atol=1e-6)
    assert torch.allclose(fast_grad, slow_grad, rtol=1e-4, atol=1e-6)
    assert not fast_grad[~mask].any()  # a masked position gets no gradient, from either term


def test_a_teacher_with_infinite_logits_or_a_cross_entropy_at_another_temperature_goes_through_autograd():
    student = torch.randn(2, 4, 16)
    teacher = torch.randn(2, 4, 16)
    assert closed_form.applies(student, teacher, 1.0, cross_entropy=True)
    assert closed_form.applies(student, teacher, 2.0, cross_entropy=False)
    assert not closed_form.applies(student, teacher, 2.0, cross_entropy=True)
    teacher[0, 0, 0] = float("-inf")
    assert not closed_form.applies(student, teacher, 1.0, cross_entropy=False)
    value = LOSSES.build("forward_kl")(student, teacher)
    assert torch.isfinite(value)
    assert not closed_form.applies(student, torch.randn(2, 4, 16, requires_grad=True), 1.0, cross_entropy=False)


def test_a_subclass_with_a_divergence_of_its_own_leaves_the_closed_form():
    class HalfKL(type(LOSSES.build("forward_kl"))):
        def divergence(self, log_q, log_p):
            return 0.5 * super().divergence(log_q, log_p)

    student, teacher, mask, _ = batch()
    assert HalfKL.jsd_beta is None and LOSSES.build("jsd", beta=0.3).jsd_beta == 0.3
    half, _ = value_and_grad(HalfKL(), student, teacher, None, mask)
    full, _ = value_and_grad(LOSSES.build("forward_kl"), student, teacher, None, mask)
    assert torch.allclose(half, 0.5 * full)
