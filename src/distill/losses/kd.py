"""Classic knowledge distillation on logits."""

from __future__ import annotations

import torch

from distill.errors import check_fraction, check_positive
from distill.losses.base import IGNORE_INDEX, LOSSES, DistillLoss
from distill.losses.functional import check_mask, check_pair, check_target, masked_cross_entropy, masked_mean, soft_kl


@LOSSES.register("kd")
class KDLoss(DistillLoss):
    """Knowledge distillation (Hinton, Vinyals & Dean, 2015, "Distilling the Knowledge in a Neural Network").

    ``alpha · T²·KL(teacher_T ‖ student_T) + (1 − alpha) · CE(student, target)``, both
    averaged over samples (``alpha`` in [0, 1]). The hard term is 0 when ``target`` is
    None or all unlabeled. ``mask`` leaves padded positions out of both terms.
    """

    requires = "identical"
    supports_mask = True

    def __init__(self, temperature: float = 4.0, alpha: float = 1.0) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        self.alpha = check_fraction("alpha", alpha, "the weight of the soft term")
        self.needs_target = self.alpha != 1.0  # the hard term reads labels, which mixup mixes away

    def soft_inputs(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits the soft term compares; variants of KD transform them first."""
        return student, teacher

    def forward(
        self,
        student: torch.Tensor,
        teacher: torch.Tensor,
        target: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        name = type(self).__name__
        check_pair(name, student, teacher, self.requires, min_dim=2)
        soft = soft_kl(*self.soft_inputs(student, teacher), self.temperature)
        if mask is None:
            loss = self.alpha * soft.mean()
        else:
            check_mask(name, student, mask)
            loss = self.alpha * masked_mean(soft, mask)
        if target is not None and self.alpha != 1.0:
            if mask is not None:
                check_target(name, student, target)
                target = target.masked_fill(~mask, IGNORE_INDEX)
            loss = loss + (1.0 - self.alpha) * masked_cross_entropy(student, target)
        return loss
