"""Attention transfer: match where the student and teacher feature maps are active."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.errors import check_positive
from distill.losses.base import LOSSES, DistillLoss
from distill.losses.functional import check_pair


@LOSSES.register("at")
class AttentionTransferLoss(DistillLoss):
    """Attention transfer (Zagoruyko & Komodakis, ICLR 2017, "Paying More Attention to Attention").

    Maps are channels-first, ``(B, C, *spatial)``: ``(B, C, L)`` or ``(B, C, H, W)``.
    A 3-D tensor is read as ``(B, C, L)``, so pass transformer tokens ``(B, N, D)`` as
    ``x.transpose(1, 2)``. Attention = mean over channels of ``|A|^p``, flattened and
    L2-normalised per sample; the loss is the mean squared difference of the two.
    """

    requires = "same_spatial"

    def __init__(self, p: float = 2.0) -> None:
        super().__init__()
        self.p = check_positive("p", p)

    def attention(self, feature: torch.Tensor) -> torch.Tensor:
        """The ``(B, positions)`` L2-normalised attention vector of a map (Zagoruyko & Komodakis, 2017)."""
        return F.normalize(feature.float().abs().pow(self.p).mean(dim=1).flatten(1), dim=1)

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_pair("at", student, teacher, self.requires, min_dim=3)
        return (self.attention(student) - self.attention(teacher)).pow(2).mean()
