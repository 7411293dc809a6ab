"""ReviewKD: student stages fused deep-to-shallow, each level matched to the teacher's at several scales."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill.errors import DistillError
from distill.losses.base import LOSSES, DistillLoss


def _conv(rank: int):
    return nn.Conv1d if rank == 3 else nn.Conv2d


def _norm(rank: int):
    return nn.BatchNorm1d if rank == 3 else nn.BatchNorm2d


class AttentionFusion(nn.Module):
    """ReviewKD's attention-based fusion (ABF): reduce a stage, blend it with the deeper fused one.

    Chen et al., CVPR 2021, "Distilling Knowledge via Knowledge Review".
    """

    def __init__(self, rank: int, in_channels: int, mid: int, out_channels: int, fuse: bool) -> None:
        super().__init__()
        conv, norm = _conv(rank), _norm(rank)
        self.reduce = nn.Sequential(conv(in_channels, mid, 1, bias=False), norm(mid))
        self.attention = nn.Sequential(conv(2 * mid, 2, 1), nn.Sigmoid()) if fuse else None
        self.project = nn.Sequential(conv(mid, out_channels, 3, padding=1, bias=False), norm(out_channels))

    def forward(self, x: torch.Tensor, deeper: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.reduce(x)
        if self.attention is not None and deeper is not None:
            deeper = F.interpolate(deeper, size=x.shape[2:], mode="nearest")
            weights = self.attention(torch.cat([x, deeper], dim=1))
            x = x * weights[:, :1] + deeper * weights[:, 1:2]
        return self.project(x), x


def hierarchical_context_loss(student: torch.Tensor, teacher: torch.Tensor, levels=(4, 2, 1)) -> torch.Tensor:
    """ReviewKD's HCL: MSE at full resolution plus MSE of average-pooled maps at coarser scales.

    Weights halve with each coarser scale and the total is normalised (Chen et al., CVPR 2021).
    """
    pool = F.adaptive_avg_pool1d if student.dim() == 3 else F.adaptive_avg_pool2d
    loss, weight, total = F.mse_loss(student, teacher), 1.0, 1.0
    for level in levels:
        if level >= min(teacher.shape[2:]):
            continue
        weight /= 2
        loss = loss + weight * F.mse_loss(pool(student, level), pool(teacher, level))
        total += weight
    return loss / total


@LOSSES.register("reviewkd")
class ReviewKDLoss(DistillLoss):
    """ReviewKD (Chen, Liu, Zhao & Jia, CVPR 2021, "Distilling Knowledge via Knowledge Review").

    Takes a list of student stages and the teacher's matching stages (shallow to deep);
    the deepest student stage is reduced first and each shallower one is fused with it
    by attention (:class:`AttentionFusion`), projected to the teacher's channels, resized
    to the teacher's map and compared with :func:`hierarchical_context_loss`; the
    levels' losses are summed. The fusion modules are built from the first batch.
    """

    requires = "multi_level"

    def __init__(self, mid_channels: int = 32) -> None:
        super().__init__()
        self.mid_channels = mid_channels
        self.fusions: nn.ModuleList | None = None

    def pending_setup(self) -> bool:
        return self.fusions is None

    def _build(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> None:
        ranks = {t.dim() for t in [*student, *teacher]}
        if len(student) != len(teacher) or len(ranks) != 1 or ranks.pop() not in (3, 4):
            shapes = [tuple(t.shape) for t in student], [tuple(t.shape) for t in teacher]
            raise DistillError(f"reviewkd needs the same number of 1-D or 2-D feature maps per side, got {shapes}.")
        rank = student[0].dim()
        self.fusions = nn.ModuleList(
            AttentionFusion(rank, s.shape[1], self.mid_channels, t.shape[1], fuse=i < len(student) - 1)
            for i, (s, t) in enumerate(zip(student, teacher))
        ).to(student[0].device)

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor], target: torch.Tensor | None = None) -> torch.Tensor:
        if self.fusions is None:
            self._build(student, teacher)
        loss, deeper = 0.0, None
        for fusion, s, t in reversed(list(zip(self.fusions, student, teacher))):
            projected, deeper = fusion(s.float(), deeper)
            projected = F.interpolate(projected, size=t.shape[2:], mode="nearest")
            loss = loss + hierarchical_context_loss(projected, t.float())
        return loss
