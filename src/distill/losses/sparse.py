"""Sparse teacher targets: the teacher's top-k log-probabilities per position plus the tail mass.

A language teacher's full distribution (tens of thousands of entries per token) is too
large to store; its ``k`` most likely tokens usually hold most of the mass. Losses that
receive :class:`TopKTargets` compare the two distributions on ``k + 1`` bins — the k
listed tokens and one bin for everything else (the teacher's tail mass against the
student's mass outside the listed tokens). A divergence on these bins is exact for the
coarse-grained distributions and, by the data-processing inequality, never larger than
the one on the full vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from distill.errors import DistillError

#: Smallest tail mass kept in log space, so that log(tail) stays finite when top-k holds everything.
_TAIL_FLOOR = 1e-12


@dataclass(frozen=True)
class TopKTargets:
    """Top-k teacher log-probabilities: ``indices`` and ``logprobs`` of shape ``(..., k)``.

    ``logprobs`` are log-softmax values of the full teacher distribution at ``temperature``
    (not renormalised over the k entries), so ``1 − Σ exp(logprobs)`` is the tail mass.
    """

    indices: torch.Tensor
    logprobs: torch.Tensor
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.indices.shape != self.logprobs.shape or self.indices.dim() < 2:
            raise DistillError(f"TopKTargets: indices {tuple(self.indices.shape)} and logprobs "
                               f"{tuple(self.logprobs.shape)} must share one shape (..., k).")
        if self.indices.dtype.is_floating_point:
            raise DistillError(f"TopKTargets: indices must be integers, got {self.indices.dtype}.")

    @property
    def shape(self) -> torch.Size:
        """The leading (position) shape, without k."""
        return self.indices.shape[:-1]

    @property
    def k(self) -> int:
        return self.indices.shape[-1]

    def tail_mass(self) -> torch.Tensor:
        """The teacher's probability outside the k listed tokens, per position: ``1 − exp(logsumexp)`` in
        float64, so that a tail far below float32's resolution near 1 is kept."""
        return (-torch.expm1(torch.logsumexp(self.logprobs.double(), dim=-1))).clamp(min=0.0).float()

    def to(self, device: torch.device | str) -> TopKTargets:
        return TopKTargets(self.indices.to(device), self.logprobs.to(device), self.temperature)


class _StudentBins(torch.autograd.Function):
    """The student's log-probabilities on the k + 1 bins from its float32 logits ``z``, and at ``labels`` (its
    cross-entropy's, so a cross-entropy share needs no second log-softmax), in one pass over the vocabulary
    each way: it allocates two vocabulary-sized tensors and keeps one for backward, as a cross-entropy does.
    The autograd of a log-softmax, a scatter and a second log-sum-exp kept two and allocated about ten.

    With ``e = exp(z − max z)``, ``S = Σ e`` and ``S_out`` the sum of ``e`` outside the listed tokens (summed
    directly, never as ``S − Σ top``, so a tail of 1e-9 keeps its digits): ``log q_i = z_i − max z − log S``
    and ``log q_tail = log S_out − log S``, floored at ``log_floor``. Backward, for upstream ``g`` and
    ``G = Σ g``: ``∂/∂z_j = Σ_{columns c at j} g_c + [j outside] g_tail · e_j / S_out − G · e_j / S``; a floored
    tail has no gradient, as a clamp gives. Only ``e`` (the listed entries zeroed) is kept for backward.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, indices: torch.Tensor, labels: torch.Tensor, log_floor: float) -> torch.Tensor:
        peak = z.amax(dim=-1, keepdim=True)
        log_top, log_labels = z.gather(-1, indices) - peak, z.gather(-1, labels) - peak
        e = (z - peak).exp_()
        total = e.sum(dim=-1, keepdim=True)
        e_top = e.gather(-1, indices)
        outside = e.scatter_(-1, indices, 0.0).sum(dim=-1, keepdim=True)
        log_total = total.log()
        log_tail = outside.log() - log_total
        floored = log_tail < log_floor
        ctx.save_for_backward(e, indices, labels, e_top, total, outside, floored)
        return torch.cat([log_top - log_total, log_tail.clamp(min=log_floor), log_labels - log_total], dim=-1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        e, indices, labels, e_top, total, outside, floored = ctx.saved_tensors
        k = indices.shape[-1]
        grad_top, grad_tail, grad_labels = grad[..., :k], grad[..., k:k + 1].masked_fill(floored, 0.0), grad[..., k + 1:]
        grad_sum = grad_top.sum(dim=-1, keepdim=True) + grad_tail + grad_labels.sum(dim=-1, keepdim=True)
        tail_weight = torch.where(floored, 0.0, grad_tail / outside)
        grad_z = e * (tail_weight - grad_sum / total)  # the listed entries of e are 0: their terms come next
        grad_z.scatter_add_(-1, indices, grad_top - grad_sum * e_top / total)
        return grad_z.scatter_add_(-1, labels, grad_labels), None, None, None


def scaled_logits(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits / temperature`` in float32; no copy for float32 logits at temperature 1."""
    logits = logits.float()
    return logits if temperature == 1.0 else logits / temperature


def binned_log_probs(student_logits: torch.Tensor, targets: TopKTargets, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log_q, log_p)`` of student and teacher on the k + 1 bins of ``targets``, in float32 (:func:`labelled_bins`)."""
    return labelled_bins(student_logits, targets, temperature)[:2]


def labelled_bins(student_logits: torch.Tensor, targets: TopKTargets, temperature: float,
                  labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(log_q, log_p, log_q_labels)``: student and teacher on the k + 1 bins of ``targets``, and the student's
    log-probabilities of ``labels`` (any value at IGNORE_INDEX; None without labels), in float32.

    The student's logits are scaled by ``1 / temperature``; the targets must have been
    written at that temperature (their full distribution is gone, so it cannot be rescaled).
    The student's tail is the log-sum-exp of its probabilities outside the listed tokens: ``1 − Σ top``
    in float32 loses tails below ~1e-7 and the gradient that should move mass back into them.
    """
    if not math.isclose(targets.temperature, temperature):
        raise DistillError(f"the teacher's top-k targets were computed at temperature {targets.temperature}, the loss "
                           f"uses {temperature}; use temperature {targets.temperature} or rebuild the cache at {temperature}.")
    if student_logits.shape[:-1] != targets.shape:
        raise DistillError(f"student logits {tuple(student_logits.shape)} do not match top-k targets for positions "
                           f"{tuple(targets.shape)}.")
    vocabulary = student_logits.shape[-1]
    if targets.k >= vocabulary:
        raise DistillError(f"top-k targets with k={targets.k} need a vocabulary larger than k, the student has {vocabulary}.")
    indices = targets.indices.long()
    columns = indices[..., :0] if labels is None else labels.clamp(min=0).unsqueeze(-1)
    student = _StudentBins.apply(scaled_logits(student_logits, temperature), indices, columns, math.log(_TAIL_FLOOR))
    tail = targets.tail_mass().unsqueeze(-1).clamp(min=_TAIL_FLOOR)
    log_p = torch.cat([targets.logprobs.float(), tail.log()], dim=-1)
    return student[..., :targets.k + 1], log_p, None if labels is None else student[..., -1]
