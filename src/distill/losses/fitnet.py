"""FitNets hints: regress the teacher's intermediate feature."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.base import LOSSES, DistillLoss
from distill.losses.functional import check_pair


@LOSSES.register("fitnet")
class FitNetLoss(DistillLoss):
    """FitNet hint loss (Romero et al., ICLR 2015, "FitNets: Hints for Thin Deep Nets").

    Mean squared error between the (already adapted) student feature and the teacher feature.
    """

    requires = "same_shape"

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_pair("fitnet", student, teacher, self.requires, min_dim=2)
        return F.mse_loss(student.float(), teacher.float())
