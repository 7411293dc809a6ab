"""Self-attention relations: match how a transformer's positions relate, whatever its width."""

from __future__ import annotations

import math

import torch

from distill.errors import ConfigError, DistillError, check_count
from distill.losses.base import LOSSES, DistillLoss
from distill.losses.token import kl_divergence


@LOSSES.register("attention_relations")
class AttentionRelationLoss(DistillLoss):
    """MiniLMv2 self-attention relations (Wang et al., Findings of ACL 2021, "MiniLMv2: Multi-Head
    Self-Attention Relation Distillation for Compressing Pretrained Transformers").

    Student and teacher vectors of one kind (queries, keys or values) ``(B, L, D)`` are split
    into ``heads`` relation heads of ``D / heads`` dims each, whatever the models' own head
    counts; a head's relation is ``softmax(x xᵀ / √d)`` over positions. The loss is
    ``KL(teacher relation ‖ student relation)`` averaged over relation heads and query
    positions (those true in ``mask``, when given). Widths may differ: only the number of
    relation heads is shared. ``causal`` keeps each position's relations to itself and the
    positions before it, as a causal language model attends.
    """

    requires = "same_batch"
    supports_mask = True

    def __init__(self, heads: int = 4, causal: bool = True) -> None:
        super().__init__()
        check_count("attention_relations: heads", heads)
        self.heads, self.causal = heads, causal

    def log_relations(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, heads, L, L)`` log-softmax of the scaled dot products of ``x`` ``(B, L, D)`` within each relation head."""
        batch, length, width = x.shape
        split = x.float().view(batch, length, self.heads, width // self.heads).transpose(1, 2)
        scores = split @ split.transpose(-1, -2) / math.sqrt(width // self.heads)
        if self.causal:
            future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        return scores.log_softmax(dim=-1)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None, *,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if student.dim() != 3 or teacher.dim() != 3 or student.shape[:2] != teacher.shape[:2]:
            raise DistillError(f"attention_relations: expected (B, L, D) vectors of the same batch and length, got "
                               f"student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}.")
        for role, x in (("student", student), ("teacher", teacher)):
            if x.shape[-1] % self.heads:
                raise ConfigError(f"attention_relations: the {role}'s width {x.shape[-1]} is not divisible by "
                                  f"heads={self.heads}; pick a number of relation heads dividing both widths "
                                  f"({student.shape[-1]} and {teacher.shape[-1]}).")
        per_row = kl_divergence(self.log_relations(teacher.detach()), self.log_relations(student)).mean(dim=1)  # (B, L)
        if mask is None:
            return per_row.mean()
        weights = mask.to(per_row.dtype)
        return (per_row * weights).sum() / weights.sum().clamp_min(1.0)
