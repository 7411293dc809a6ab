"""OFA: logit-space distillation for heterogeneous teacher/student pairs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.errors import DistillError, check_positive
from distill.losses.base import IGNORE_INDEX, LOSSES, DistillLoss
from distill.losses.functional import check_pair, check_target, masked_mean


@LOSSES.register("ofa")
class OFALoss(DistillLoss):
    """OFA (Hao et al., NeurIPS 2023, "One-for-All: Bridge the Gap Between Heterogeneous Architectures in KD").

    Cross-entropy of the student against teacher probabilities whose target-class
    weight is enhanced: ``w = (p_t + onehot)^ε − onehot``; ε = 1 gives plain soft
    cross-entropy. Used with ``Match(project=True)`` so each student stage is projected
    to logit space, which lets CNN, ViT and MLP pairs distil without matching features.
    """

    requires = "identical"
    needs_target = True

    def __init__(self, eps: float = 1.0, temperature: float = 1.0) -> None:
        super().__init__()
        self.eps = check_positive("eps", eps)
        self.temperature = check_positive("temperature", temperature)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        check_pair("ofa", student, teacher, self.requires, min_dim=2)
        if target is None:
            raise DistillError("ofa enhances the target class, so it needs labels; use 'kd' for unlabeled data.")
        check_target("ofa", student, target)
        log_p_s = F.log_softmax(student.float() / self.temperature, dim=-1)
        p_t = F.softmax(teacher.float() / self.temperature, dim=-1)
        labelled = target != IGNORE_INDEX
        onehot = F.one_hot(target.clamp(min=0), student.shape[-1]).float() * labelled.unsqueeze(-1)
        weights = (p_t + onehot).pow(self.eps) - onehot
        return masked_mean(-(weights * log_p_s).sum(dim=-1), labelled)
