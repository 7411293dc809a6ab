"""Relational KD: match the distances and angles between the samples of a batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.errors import ConfigError
from distill.losses.base import LOSSES, DistillLoss
from distill.losses.functional import check_pair, masked_mean


def sample_vectors(feature: torch.Tensor) -> torch.Tensor:
    """Each sample's features flattened to one float32 row, ``(B, D)``; used by RKD and PKT."""
    return feature.float().flatten(1)


def pairwise_differences(feature: torch.Tensor) -> torch.Tensor:
    """``(B, B, D)`` tensor whose ``[i, j]`` entry is ``x_j − x_i`` (Park et al., CVPR 2019)."""
    flat = sample_vectors(feature)
    return flat.unsqueeze(0) - flat.unsqueeze(1)


def normalised_distances(differences: torch.Tensor) -> torch.Tensor:
    """``B×B`` Euclidean distances divided by their mean non-zero value (Park et al., CVPR 2019).

    ``differences`` comes from :func:`pairwise_differences`. All-zero distances (one
    sample, or all samples equal) stay zero instead of becoming NaN.
    """
    distances = differences.norm(dim=2)
    scale = masked_mean(distances, distances > 0)
    return distances / scale.clamp(min=torch.finfo(torch.float32).tiny)


def triplet_angles(differences: torch.Tensor) -> torch.Tensor:
    """``B×B×B`` cosines ``⟨e_ij, e_ik⟩`` of unit difference vectors (Park et al., CVPR 2019).

    ``differences`` comes from :func:`pairwise_differences`; a zero difference (``j = i``
    or ``k = i``) gives a zero cosine on both sides, as in the authors' code.
    """
    unit = F.normalize(differences, p=2, dim=2)
    return torch.bmm(unit, unit.transpose(1, 2))


@LOSSES.register("rkd")
class RKDLoss(DistillLoss):
    """Relational KD (Park, Kim, Lu & Cho, CVPR 2019, "Relational Knowledge Distillation").

    ``distance_weight · Huber(ψ_D^s, ψ_D^t) + angle_weight · Huber(ψ_A^s, ψ_A^t)``, Huber
    with δ = 1 (smooth-L1) averaged over all entries: ``ψ_D`` are the pairwise Euclidean
    distances of the flattened features divided by their mean non-zero distance, ``ψ_A``
    the cosines of the angles of every sample triplet. Feature shapes may differ; only
    the batch size must agree. Memory: ``O(B²·D)`` for the differences, ``O(B³)`` for the angles.
    """

    requires = "same_batch"

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0) -> None:
        super().__init__()
        for name, value in (("distance_weight", distance_weight), ("angle_weight", angle_weight)):
            if not value >= 0:
                raise ConfigError(f"{name} must be >= 0, got {value}.")
        self.distance_weight = float(distance_weight)
        self.angle_weight = float(angle_weight)

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_pair("rkd", student, teacher, self.requires, min_dim=2)
        diff_s, diff_t = pairwise_differences(student), pairwise_differences(teacher)
        distance = F.smooth_l1_loss(normalised_distances(diff_s), normalised_distances(diff_t), beta=1.0)
        angle = F.smooth_l1_loss(triplet_angles(diff_s), triplet_angles(diff_t), beta=1.0)
        return self.distance_weight * distance + self.angle_weight * angle
