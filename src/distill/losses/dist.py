"""DIST: match the correlations of predictions, not the predictions themselves."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.errors import check_positive
from distill.losses.base import LOSSES, DistillLoss
from distill.losses.functional import check_mask, check_pair

#: Floor on each vector's norm in the correlation: a zero-variance vector correlates 0.
EPS = 1e-8


def pearson_correlation(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    """Pearson correlation of ``a`` and ``b`` along ``dim`` (the cosine of the centred vectors).

    The relation measure of DIST (Huang et al., NeurIPS 2022, "Knowledge Distillation
    from A Stronger Teacher"). Each norm is floored at ``EPS``, so a vector with zero
    variance gives correlation 0 instead of NaN.
    """
    a = a - a.mean(dim=dim, keepdim=True)
    b = b - b.mean(dim=dim, keepdim=True)
    return F.cosine_similarity(a, b, dim=dim, eps=EPS)


@LOSSES.register("dist")
class DISTLoss(DistillLoss):
    """DIST (Huang et al., NeurIPS 2022, "Knowledge Distillation from A Stronger Teacher").

    With ``p = softmax(logits / T)`` flattened to (samples, classes):
    ``T² · (beta · inter + gamma · intra)``, where ``inter`` is 1 − the mean Pearson
    correlation of student and teacher rows (each sample across classes) and ``intra``
    is 1 − the mean correlation of columns (each class across the batch). Each term lies
    in [0, 2]; a batch of one sample has no intra-class variance, so ``intra`` is then 1.
    ``mask`` keeps only the unmasked rows (the loss is 0 when none is left).
    """

    requires = "identical"
    supports_mask = True

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, temperature: float = 1.0) -> None:
        super().__init__()
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.temperature = check_positive("temperature", temperature)

    def forward(
        self,
        student: torch.Tensor,
        teacher: torch.Tensor,
        target: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        check_pair("dist", student, teacher, self.requires, min_dim=2)
        if mask is not None:
            check_mask("dist", student, mask)
            student, teacher = student[mask], teacher[mask]
            if not len(student):
                return student.float().sum()
        classes = student.shape[-1]
        p_s = F.softmax(student.float().reshape(-1, classes) / self.temperature, dim=-1)
        p_t = F.softmax(teacher.float().reshape(-1, classes) / self.temperature, dim=-1)
        inter = 1.0 - pearson_correlation(p_s, p_t, dim=1).mean()
        intra = 1.0 - pearson_correlation(p_s, p_t, dim=0).mean()
        return self.temperature**2 * (self.beta * inter + self.gamma * intra)
