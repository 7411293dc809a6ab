"""Logit-standardised KD: compare the shapes of logit vectors, not their scale."""

from __future__ import annotations

import torch

from distill.errors import DistillError
from distill.losses.base import LOSSES
from distill.losses.kd import KDLoss

#: Added to each row's standard deviation, so a constant row standardises to zeros.
EPS = 1e-7


def standardize_logits(logits: torch.Tensor) -> torch.Tensor:
    """Z-score each row over the last dim, in float32: ``(z − mean) / (std + EPS)``.

    The pre-process of Sun et al. (CVPR 2024, "Logit Standardization in Knowledge
    Distillation"); ``std`` is the sample (Bessel-corrected) standard deviation, as in
    the authors' released code. Rows need at least 2 entries.
    """
    logits = logits.float()
    return (logits - logits.mean(dim=-1, keepdim=True)) / (logits.std(dim=-1, keepdim=True) + EPS)


@LOSSES.register("lskd")
class LogitStandardizedKDLoss(KDLoss):
    """KD on standardised logits (Sun et al., CVPR 2024, "Logit Standardization in Knowledge Distillation").

    ``alpha · T²·KL(softmax(ẑ_t/T) ‖ softmax(ẑ_s/T)) + (1 − alpha) · CE(student, target)``,
    where ``ẑ`` are the z-scored logits (see ``standardize_logits``); the hard term uses the
    raw student logits and is 0 when ``target`` is None or all unlabeled. The soft term
    ignores any per-sample ``a·z + b`` (a > 0) rescaling of the student's logits.
    """

    def __init__(self, temperature: float = 2.0, alpha: float = 1.0) -> None:
        super().__init__(temperature, alpha)

    def soft_inputs(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if student.shape[-1] < 2:
            raise DistillError(f"lskd needs at least 2 classes to standardise, got logits {tuple(student.shape)}.")
        return standardize_logits(student), standardize_logits(teacher)
