"""Neuron selectivity transfer: match the distributions of channel activation patterns."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.base import LOSSES, DistillLoss
from distill.losses.functional import check_pair
from distill.losses.spatial import flatten_spatial


def mean_poly_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per sample, the mean of ``(x_iᵀ y_j)²`` over all channel pairs (Huang & Wang, 2017).

    ``x`` is ``(B, C_x, N)`` and ``y`` is ``(B, C_y, N)``; the result is ``(B,)``.
    """
    return (x @ y.transpose(1, 2)).pow(2).mean(dim=(1, 2))


@LOSSES.register("nst")
class NSTLoss(DistillLoss):
    """Neuron selectivity transfer (Huang & Wang, arXiv 2017, "Like What You Like: Knowledge Distill via Neuron Selectivity Transfer").

    Each channel's spatial activation vector is L2-normalised; the loss is the squared
    MMD between the student's and the teacher's sets of channel vectors with the
    polynomial kernel ``k(x, y) = (xᵀy)²`` (d = 2, c = 0), averaged over the batch.
    Channel counts may differ; batch and spatial sizes must agree.
    """

    requires = "same_spatial"

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_pair("nst", student, teacher, self.requires, min_dim=3)
        f_s = F.normalize(flatten_spatial(student), p=2, dim=2)
        f_t = F.normalize(flatten_spatial(teacher), p=2, dim=2)
        mmd = mean_poly_kernel(f_t, f_t) + mean_poly_kernel(f_s, f_s) - 2 * mean_poly_kernel(f_s, f_t)
        return mmd.mean()
