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


def binned_log_probs(student_logits: torch.Tensor, targets: TopKTargets, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log_q, log_p)`` of student and teacher on the k + 1 bins of ``targets``, in float32.

    The student's logits are scaled by ``1 / temperature``; the targets must have been
    written at that temperature (their full distribution is gone, so it cannot be rescaled).
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
    log_all = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    indices = targets.indices.long()
    log_top = log_all.gather(-1, indices)
    # the student's mass outside the listed tokens as a log-sum-exp over them: 1 − Σ top in float32 loses
    # tails below ~1e-7 and the gradient that should move mass back into them
    log_outside = torch.logsumexp(log_all.scatter(-1, indices, float("-inf")), dim=-1, keepdim=True)
    log_q = torch.cat([log_top, log_outside.clamp(min=math.log(_TAIL_FLOOR))], dim=-1)
    teacher_top = targets.logprobs.float()
    tail = targets.tail_mass().unsqueeze(-1).clamp(min=_TAIL_FLOOR)
    log_p = torch.cat([teacher_top, tail.log()], dim=-1)
    return log_q, log_p
