"""Shared pieces of the losses: tensor checks and float32 maths on logits.

Logits put classes on the last dimension; every other position is one sample, so
``(B, C)`` classifier outputs and ``(B, L, V)`` token outputs both work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.errors import DistillError
from distill.losses.base import IGNORE_INDEX


def check_pair(loss: str, student: torch.Tensor, teacher: torch.Tensor, requires: str, min_dim: int) -> None:
    """Check both tensors have ``min_dim`` dims and agree as ``requires`` says."""
    shapes = f"student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}"
    if student.dim() < min_dim or teacher.dim() < min_dim:
        raise DistillError(f"{loss}: expected tensors with at least {min_dim} dims, got {shapes}.")
    if requires in ("identical", "same_shape", "same_positions") and student.shape != teacher.shape:
        raise DistillError(f"{loss}: shapes must match, got {shapes}; add a projector to the student.")
    if requires == "same_spatial" and (
        student.dim() != teacher.dim() or student.shape[0] != teacher.shape[0] or student.shape[2:] != teacher.shape[2:]
    ):
        raise DistillError(
            f"{loss}: batch and spatial sizes (dims 2+) must match, got {shapes}; "
            "resize one map (e.g. interpolate or pool) to the other's size."
        )
    if student.shape[0] != teacher.shape[0]:
        raise DistillError(f"{loss}: batch sizes differ, got {shapes}.")


def check_target(loss: str, logits: torch.Tensor, target: torch.Tensor) -> None:
    """Check ``target`` holds one integer label (or IGNORE_INDEX) per row of ``logits``."""
    if target.shape != logits.shape[:-1] or target.dtype.is_floating_point or target.dtype == torch.bool:
        raise DistillError(
            f"{loss}: target must be integer labels of shape {tuple(logits.shape[:-1])} for logits "
            f"{tuple(logits.shape)}, got {target.dtype} {tuple(target.shape)}."
        )
    classes = logits.shape[-1]
    if bool((((target < 0) | (target >= classes)) & (target != IGNORE_INDEX)).any()):
        raise DistillError(
            f"{loss}: labels must lie in [0, {classes}) or be IGNORE_INDEX ({IGNORE_INDEX}) for unlabeled samples."
        )


def check_mask(loss: str, logits: torch.Tensor, mask: torch.Tensor) -> None:
    """Check ``mask`` is a bool tensor with one entry per row of ``logits`` (all dims but the last)."""
    if mask.dtype != torch.bool or mask.shape != logits.shape[:-1]:
        raise DistillError(
            f"{loss}: mask must be a bool tensor of shape {tuple(logits.shape[:-1])} (true at the positions "
            f"that count) for logits {tuple(logits.shape)}, got {mask.dtype} {tuple(mask.shape)}."
        )


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is true; 0 (never NaN) when nothing is selected.

    Values outside the mask never reach the result, even when they are not finite.
    """
    return torch.where(mask, values, 0.0).sum() / mask.sum().clamp(min=1)


def cross_entropy_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The sum of the cross-entropies of the labelled rows (IGNORE_INDEX rows add nothing), in float32."""
    check_target("cross-entropy", logits, target)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE_INDEX,
                           reduction="sum")


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over labelled rows only; 0 when every label is IGNORE_INDEX.

    The hard-label term of Hinton, Vinyals & Dean (2015), "Distilling the Knowledge
    in a Neural Network"; also the plain task loss.
    """
    return cross_entropy_sum(logits, target) / (target != IGNORE_INDEX).sum().clamp(min=1)


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-row ``T² · KL(softmax(t/T) ‖ softmax(s/T))`` over the last dim, in float32.

    The soft-target term of Hinton, Vinyals & Dean (2015), "Distilling the Knowledge
    in a Neural Network"; T² keeps gradient sizes independent of T.
    """
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return temperature**2 * (log_t.exp() * (log_t - log_s)).sum(dim=-1)
