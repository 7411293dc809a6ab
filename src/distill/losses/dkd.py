"""Decoupled knowledge distillation: target-class and non-target-class terms."""

from __future__ import annotations

import torch

from distill.errors import DistillError, check_positive
from distill.losses.base import IGNORE_INDEX, LOSSES, DistillLoss
from distill.losses.functional import check_pair, check_target, masked_mean, soft_kl


def _split(logits: torch.Tensor, is_target: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits over T as (binary [target, logsumexp(rest)], the C−1 non-target logits).

    Softmax of the binary pair gives (p_target, 1 − p_target) without cancellation.
    """
    z = logits.float().reshape(is_target.shape) / temperature
    rest = z[~is_target].reshape(-1, is_target.shape[-1] - 1)
    return torch.stack([z[is_target], rest.logsumexp(dim=-1)], dim=-1), rest


@LOSSES.register("dkd")
class DKDLoss(DistillLoss):
    """Decoupled KD (Zhao et al., CVPR 2022, "Decoupled Knowledge Distillation").

    ``T² · (alpha · TCKD + beta · NCKD)``: TCKD is the KL between binary
    (target, rest) distributions, NCKD the KL among the non-target classes only.
    Unlabeled samples (IGNORE_INDEX) are left out of the mean.
    """

    requires = "identical"
    needs_target = True

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.temperature = check_positive("temperature", temperature)

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        if target is None:
            raise DistillError("dkd needs class labels (target); for unlabeled data use the 'kd' loss.")
        check_pair("dkd", student, teacher, self.requires, min_dim=2)
        check_target("dkd", student, target)
        classes = student.shape[-1]
        if classes < 2:
            raise DistillError(f"dkd needs at least 2 classes, got logits {tuple(student.shape)}.")
        labelled = (target != IGNORE_INDEX).reshape(-1)
        safe = torch.where(labelled, target.reshape(-1), 0)
        is_target = torch.nn.functional.one_hot(safe, classes).bool()

        binary_s, rest_s = _split(student, is_target, self.temperature)
        binary_t, rest_t = _split(teacher, is_target, self.temperature)
        per_sample = self.alpha * soft_kl(binary_s, binary_t) + self.beta * soft_kl(rest_s, rest_t)
        return self.temperature**2 * masked_mean(per_sample, labelled)
