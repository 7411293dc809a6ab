"""Classic knowledge distillation on logits."""

from __future__ import annotations

import torch

from distill.losses.base import LOSSES, DistillLoss
from distill.losses.functional import check_pair, check_positive, masked_cross_entropy, soft_kl


@LOSSES.register("kd")
class KDLoss(DistillLoss):
    """Knowledge distillation (Hinton, Vinyals & Dean, 2015, "Distilling the Knowledge in a Neural Network").

    ``alpha · T²·KL(teacher_T ‖ student_T) + (1 − alpha) · CE(student, target)``, both
    averaged over samples. The hard term is 0 when ``target`` is None or all unlabeled.
    """

    requires = "identical"

    def __init__(self, temperature: float = 4.0, alpha: float = 1.0) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.alpha = float(alpha)

    def soft_inputs(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits the soft term compares; variants of KD transform them first."""
        return student, teacher

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_pair(type(self).__name__, student, teacher, self.requires, min_dim=2)
        loss = self.alpha * soft_kl(*self.soft_inputs(student, teacher), self.temperature).mean()
        if target is not None and self.alpha != 1.0:
            loss = loss + (1.0 - self.alpha) * masked_cross_entropy(student, target)
        return loss
