"""Dense-prediction losses on feature maps: pairwise position affinities and channel distributions.

Maps are channels-first, ``(B, C, *spatial)``: ``(B, C, L)`` or ``(B, C, H, W)``; pass
transformer tokens ``(B, N, D)`` as ``x.transpose(1, 2)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.errors import check_positive
from distill.losses.base import LOSSES, DistillLoss
from distill.losses.functional import check_pair, soft_kl


def flatten_spatial(feature: torch.Tensor) -> torch.Tensor:
    """A ``(B, C, *spatial)`` map as float32 ``(B, C, N)``, ``N`` = number of positions; used by NST too."""
    return feature.float().flatten(2)


def position_affinity(feature: torch.Tensor) -> torch.Tensor:
    """``(B, N, N)`` cosine similarities of the C-dim vectors at every pair of positions (Liu et al., CVPR 2019)."""
    unit = F.normalize(flatten_spatial(feature), p=2, dim=1)
    return unit.transpose(1, 2) @ unit


@LOSSES.register("pairwise_affinity")
class PairwiseAffinityLoss(DistillLoss):
    """Pair-wise distillation (Liu et al., CVPR 2019, "Structured Knowledge Distillation for Semantic Segmentation").

    Mean over the batch and all ``N×N`` position pairs of ``(a^s_ij − a^t_ij)²``, where
    ``a_ij`` is the cosine similarity of the feature vectors at positions ``i`` and ``j``.
    Channel counts may differ. Memory is ``O(B·N²)``: pool large maps first, as the paper
    does with its node granularity.
    """

    requires = "same_spatial"

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_pair("pairwise_affinity", student, teacher, self.requires, min_dim=3)
        return (position_affinity(student) - position_affinity(teacher)).pow(2).mean()


@LOSSES.register("channel_wise")
class ChannelWiseLoss(DistillLoss):
    """Channel-wise KD (Shu et al., ICCV 2021, "Channel-wise Knowledge Distillation for Dense Prediction").

    Each channel's map becomes a distribution over positions, ``softmax(y_c / T)``; the
    loss is ``T² · KL(teacher ‖ student)`` summed over positions and averaged over
    channels and the batch. Shapes must match: project student channels (1×1 conv) first.
    """

    requires = "same_shape"

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_pair("channel_wise", student, teacher, self.requires, min_dim=3)
        return soft_kl(flatten_spatial(student), flatten_spatial(teacher), self.temperature).mean()
