"""Forward KL, reverse KL and GKD's generalised JSD over a dense vocabulary, with their gradients in closed form.

Through autograd, ``KL(p ‖ q)`` on a batch of next-token logits is a log-softmax on each side, an
exponential, a product and their saved outputs, then as many passes again in backward: three times
the time of a cross-entropy step's loss on a 49,152-token vocabulary. Its gradient with respect to
the student's logits ``z`` has a closed form, so :class:`DenseDivergence` computes value and gradient
in one forward pass (two softmaxes) and backward only scales the saved gradient — the approach of
Liger-Kernel's fused JSD (``LigerJSDFunction``, linkedin/Liger-Kernel), in PyTorch operations. With
``q = softmax(z / T)``, ``p = softmax(t / T)`` and ``M = β·p + (1 − β)·q``:

- β = 0, ``KL(p ‖ q)``: ``∂/∂z = (q − p) / T``;
- β = 1, ``KL(q ‖ p)``: ``∂/∂z = q ⊙ (log q − log p − KL(q ‖ p)) / T``;
- otherwise ``β·KL(p ‖ M) + (1 − β)·KL(q ‖ M)``: ``∂/∂z = (1 − β) · q ⊙ (log q − log M − KL(q ‖ M)) / T``
  (the terms through ``M`` cancel: ``∂JSD/∂q = (1 − β) log(q / M)``).

A cross-entropy on labels at T = 1 adds ``(q − onehot(y)) · w / L``. Values equal the autograd path's
(:mod:`distill.losses.token`) to float32 rounding; a teacher with non-finite logits, a teacher that
itself needs gradients, or a cross-entropy at T ≠ 1 go through autograd instead (:func:`applies`).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from distill.losses.base import IGNORE_INDEX


def applies(student_logits: Tensor, teacher: object, temperature: float, cross_entropy: bool) -> bool:
    """Whether :class:`DenseDivergence` computes this loss: dense float teacher logits of the student's shape
    that need no gradient and are all finite, and a cross-entropy term (if any) at temperature 1."""
    return (isinstance(teacher, Tensor) and teacher.shape == student_logits.shape and teacher.dim() >= 2
            and teacher.is_floating_point() and not teacher.requires_grad
            and (not cross_entropy or temperature == 1.0) and bool(torch.isfinite(torch.stack(torch.aminmax(teacher))).all()))


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """``Σ a·b`` over the last dim of ``(R, V)`` tensors, as R dot products (no ``(R, V)`` temporary)."""
    return (a.unsqueeze(-2) @ b.unsqueeze(-1)).reshape(a.shape[:-1])


def _softmax_and_lse(logits: Tensor) -> tuple[Tensor, Tensor]:
    """``softmax(logits)`` (a new tensor) and ``logsumexp(logits)`` over the last dim, from one exponential pass."""
    top = logits.amax(dim=-1, keepdim=True)
    probs = (logits - top).exp_()
    total = probs.sum(dim=-1, keepdim=True)
    probs.div_(total)
    return probs, (top + total.log()).squeeze(-1)


class DenseDivergence(torch.autograd.Function):
    """``Σ_rows weight · divergence_β(p_row ‖ q_row) / positions`` plus ``ce_weight · Σ CE / labelled``, on logits
    ``(R, V)``; ``weight (R,)`` is 1 at the kept rows and 0 elsewhere, ``labels (R,)`` IGNORE_INDEX where there is
    no label (None: no cross-entropy)."""

    @staticmethod
    def forward(ctx, student_logits: Tensor, teacher_logits: Tensor, weight: Tensor, labels: Tensor | None,
                beta: float, temperature: float, positions: Tensor, ce_weight: float, labelled: Tensor) -> Tensor:
        z = student_logits.float()
        t = teacher_logits.float()
        if temperature != 1.0:
            z, t = z / temperature, t / temperature
        q, lse_q = _softmax_and_lse(z)
        p, lse_p = _softmax_and_lse(t)
        weight, positions = weight.float(), positions.clamp(min=1)
        row_scale = (weight / positions).unsqueeze(-1)
        if beta == 0.0:  # Σ p (log p − log q) = ⟨p, t − z⟩ − lse_p + lse_q
            values = _dot(p, t) - _dot(p, z) - lse_p + lse_q
            gradient = q.sub(p).mul_(row_scale)
        else:
            log_q = z - lse_q.unsqueeze(-1)
            if beta == 1.0:  # Σ q (log q − log p), log p = t − lse_p
                log_ratio = log_q.sub_(t).add_(lse_p.unsqueeze(-1))
                reverse = values = _dot(q, log_ratio)
            else:
                mixture = (p * beta).add_(q, alpha=1.0 - beta).clamp_(min=torch.finfo(torch.float32).tiny).log_()
                log_p = t - lse_p.unsqueeze(-1)
                log_ratio = log_q.sub_(mixture)
                reverse = _dot(q, log_ratio)
                values = beta * _dot(p, log_p.sub_(mixture)) + (1.0 - beta) * reverse
            # KL(q ‖ p) or KL(q ‖ M) centres the gradient through the student's softmax
            gradient = log_ratio.sub_(reverse.unsqueeze(-1)).mul_(q).mul_(row_scale * (1.0 - beta if beta < 1 else 1.0))
        total = (values * weight).sum() / positions
        if labels is not None:
            ce_scale = (labels != IGNORE_INDEX).float() * (ce_weight / labelled.clamp(min=1))
            rows = labels.clamp(min=0).unsqueeze(-1)
            total = total + (ce_scale * (lse_q - z.gather(-1, rows).squeeze(-1))).sum()
            gradient.addcmul_(q, ce_scale.unsqueeze(-1))
            gradient.scatter_add_(-1, rows, -ce_scale.unsqueeze(-1))
        if temperature != 1.0:
            gradient.div_(temperature)
        ctx.save_for_backward(gradient.to(student_logits.dtype))
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        (gradient,) = ctx.saved_tensors
        if not bool(grad_output == 1):  # the loss itself, as it almost always is: no (R, V) product
            gradient = gradient * grad_output
        return gradient, None, None, None, None, None, None, None, None
