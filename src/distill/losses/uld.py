"""Universal Logit Distillation: the sorted probability vectors of two vocabularies."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.errors import DistillError
from distill.losses.base import LOSSES
from distill.losses.cross_vocabulary import CrossVocabularyLoss


def sorted_wasserstein(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per row, ``Σ_i |p_(i) − q_(i)|`` of two probability vectors each sorted in descending order, the shorter
    padded with zeros to the longer's length: ULD's closed form of the Wasserstein-1 distance (Boizard et al.
    2024), which needs no correspondence between the two vocabularies. It is 0 exactly when the sorted vectors
    agree, so it cannot tell which token holds which mass (permutation-invariant)."""
    if p.shape[:-1] != q.shape[:-1]:
        raise DistillError(f"sorted_wasserstein: the rows of {tuple(p.shape)} and {tuple(q.shape)} differ.")
    size = max(p.shape[-1], q.shape[-1])
    p = F.pad(p.sort(dim=-1, descending=True).values, (0, size - p.shape[-1]))
    q = F.pad(q.sort(dim=-1, descending=True).values, (0, size - q.shape[-1]))
    return (p - q).abs().sum(dim=-1)


@LOSSES.register("uld")
class ULDLoss(CrossVocabularyLoss):
    """Universal Logit Distillation (Boizard et al., 2024, "Towards Cross-Tokenizer Distillation: the Universal
    Logit Distillation Loss for LLMs"), as TRL's GOLD trainer computes it: per aligned pair,
    :func:`sorted_wasserstein` between ``softmax(student / T)`` and ``softmax(teacher / T)``.
    """

    def divergence(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return sorted_wasserstein(torch.softmax(student_logits.float() / self.temperature, dim=-1),
                                  torch.softmax(teacher_logits.float() / self.temperature, dim=-1))
