"""Similarity-preserving KD: match the batch's pairwise similarity structure."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.base import LOSSES, DistillLoss
from distill.losses.functional import check_pair


def similarity_matrix(feature: torch.Tensor) -> torch.Tensor:
    """Row-L2-normalised ``B×B`` Gram matrix of flattened features (Tung & Mori, ICCV 2019)."""
    flat = feature.float().flatten(1)
    return F.normalize(flat @ flat.t(), p=2, dim=1)


@LOSSES.register("sp")
class SimilarityPreservingLoss(DistillLoss):
    """Similarity-preserving KD (Tung & Mori, ICCV 2019, "Similarity-Preserving Knowledge Distillation").

    ``‖G_s − G_t‖²_F / B²`` where ``G`` is the row-L2-normalised Gram matrix of each
    side's flattened features; feature shapes may differ, only the batch size must agree.
    """

    requires = "same_batch"

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_pair("sp", student, teacher, self.requires, min_dim=2)
        batch = student.shape[0]
        return (similarity_matrix(student) - similarity_matrix(teacher)).pow(2).sum() / batch**2
