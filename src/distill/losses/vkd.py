"""Feature distillation through an orthogonal projection onto standardised teacher features."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.base import LOSSES, DistillLoss
from distill.losses.functional import check_pair


def standardize_features(features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance per channel (dim 1) over the batch and any spatial positions.

    The teacher-side normalisation of VkD (Miles, Elezi & Deng, CVPR 2024).
    """
    dims = [0, *range(2, features.dim())]
    mean = features.mean(dim=dims, keepdim=True)
    std = features.std(dim=dims, keepdim=True, unbiased=False)
    return (features - mean) / (std + eps)


@LOSSES.register("vkd")
class VkDLoss(DistillLoss):
    """VkD (Miles, Elezi & Deng, CVPR 2024, "VkD: Improving Knowledge Distillation using Orthogonal Projections").

    Smooth-L1 between the student feature, mapped by an orthogonal projector (built by
    the adapters because ``projector = "orthogonal"``), and the standardised teacher feature.
    """

    requires = "same_shape"
    projector = "orthogonal"

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        check_pair("vkd", student, teacher, self.requires, min_dim=2)
        return F.smooth_l1_loss(student.float(), standardize_features(teacher.float()))
