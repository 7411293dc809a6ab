"""Probabilistic knowledge transfer: match the batch's cosine-affinity distributions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.errors import check_positive
from distill.losses.base import LOSSES, DistillLoss
from distill.losses.functional import check_pair
from distill.losses.rkd import sample_vectors


def conditional_probabilities(feature: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``B×B`` row-stochastic matrix ``p(j | i) ∝ (cos(x_i, x_j) + 1) / 2`` (Passalis & Tefas, ECCV 2018).

    A sample whose features are all zero gets cosine 0 with every sample (not NaN).
    """
    flat = F.normalize(sample_vectors(feature), p=2, dim=1, eps=eps)
    kernel = (flat @ flat.t() + 1.0) / 2.0
    return kernel / kernel.sum(dim=1, keepdim=True)


@LOSSES.register("pkt")
class PKTLoss(DistillLoss):
    """Probabilistic KT (Passalis & Tefas, ECCV 2018, "Learning Deep Representations with Probabilistic Knowledge Transfer").

    ``Σ_ij p_t(j|i) · log((p_t(j|i) + eps) / (p_s(j|i) + eps)) / B²``: the KL divergence
    of teacher from student conditional distributions (cosine kernel mapped to [0, 1]),
    summed over rows and averaged over all ``B²`` entries as the authors' reference code
    does. Feature shapes may differ; only the batch size must agree.
    """

    requires = "same_batch"

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        self.eps = check_positive("eps", eps)

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_pair("pkt", student, teacher, self.requires, min_dim=2)
        p_s = conditional_probabilities(student, self.eps)
        p_t = conditional_probabilities(teacher, self.eps)
        return (p_t * torch.log((p_t + self.eps) / (p_s + self.eps))).mean()
