"""PointDistiller's local distillation: match the local graph structure of per-point features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parameter import is_lazy

from distill.errors import ConfigError, check_count, check_positive
from distill.losses.base import LOSSES, DistillLoss
from distill.losses.functional import check_pair
from distill.point_graph import edge_linear, knn_indices


def importance_weights(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """``n · softmax(z / τ)`` over the last axis, ``z`` the scores ``(B, n)`` standardised per sample (so τ does
    not depend on the features' scale); the weights average 1, equal scores weigh 1 each."""
    centred = scores - scores.mean(dim=-1, keepdim=True)
    z = centred / scores.std(dim=-1, keepdim=True, unbiased=False).clamp(min=1e-6)
    return scores.shape[-1] * F.softmax(z / temperature, dim=-1)


@LOSSES.register("pointdistiller")
class PointDistillerLoss(DistillLoss):
    """Local distillation of PointDistiller (Zhang, Dong, Tai & Ma, CVPR 2023, "PointDistiller: Structured
    Knowledge Distillation Towards Efficient and Compact 3D Detection"), on per-point features ``(B, C, N)``.

    As the paper does for raw-point networks (§3.2): a point's importance is the maximum over channels of the
    teacher's feature there; the ``num_points`` most important points of each cloud (all by default) are the
    centres of local graphs; each centre's ``k`` nearest points in the *teacher's* feature space (itself
    first) give the edges of both graphs, so the student is compared on the teacher's neighbourhoods. An
    edge carries ``(x_j − x_i, x_i)`` (DGCNN's form; the paper's ``(x_i, x_j)`` is the same information up to
    a linear map, which the layer below absorbs). A graph layer ``γ`` (linear, batch norm, ReLU, ``hidden``
    wide) maps each edge; the loss is ``mean_i φ_i · mean_{j,c} (γ(e^S)_ijc − γ(e^T)_ijc)²`` with
    ``φ = n · softmax(standardised importance / τ)`` over the ``n`` centres of a cloud (average weight 1;
    ``reweight: false`` gives every centre weight 1).

    Where this differs from the paper: the student's features reach the teacher's width through the
    Distiller's trainable 1×1 projector (``requires = "same_positions"``) and one ``γ`` is shared by both
    sides — the paper trains a ``γ`` per side that maps both to the student's width —; ``γ``'s batch norm
    has no affine parameters and normalises student and teacher edges with one set of statistics, so it
    cannot shrink the loss by scaling its output to zero, and equal features give a loss of exactly 0; the
    weights come from the importance score of the teacher's features (as the authors' code does for
    voxels), not from the maximum of the teacher's graph features, standardised per cloud so that ``τ`` does
    not depend on the features' scale (the paper's other score, points per voxel, is for voxel detectors).
    ``γ`` is trained by this loss alone and dropped with the teacher at export.
    """

    requires = "same_positions"

    def __init__(self, k: int = 16, num_points: int | None = None, hidden: int = 64, temperature: float = 1.0,
                 reweight: bool = True) -> None:
        super().__init__()
        self.k = check_count("k", k)
        self.num_points = None if num_points is None else check_count("num_points", num_points)
        self.temperature = check_positive("temperature", temperature)
        if not isinstance(reweight, bool):
            raise ConfigError(f"reweight must be true or false, got {reweight!r}.")
        self.reweight = reweight
        self.edge_layer = nn.LazyLinear(check_count("hidden", hidden))  # γ: linear, then batch norm and ReLU
        self.norm = nn.BatchNorm2d(hidden, affine=False)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        check_pair("pointdistiller", student, teacher, self.requires, min_dim=3)
        student, teacher = student.float().flatten(2), teacher.float().flatten(2)
        batch, _, points = teacher.shape
        if self.k > points or (self.num_points or 0) > points:
            raise ConfigError(f"pointdistiller: k={self.k} and num_points={self.num_points} must not exceed the "
                              f"{points} points of the tapped features {tuple(teacher.shape)}.")
        scores = teacher.amax(dim=1)                                            # (B, N) importance
        centres = scores.topk(self.num_points or points, dim=1).indices         # (B, n)
        rows = knn_indices(teacher, self.k).gather(1, centres.unsqueeze(-1).expand(-1, -1, self.k))  # (B, n, k)
        if is_lazy(self.edge_layer.weight):  # its input width, 2C, is known now
            self.edge_layer(student.new_zeros(0, 2 * student.shape[1]))
        layer = self.edge_layer
        edges = torch.cat([edge_linear(side, rows, layer.weight, layer.bias, centres) for side in (student, teacher)])
        mapped = F.relu(self.norm(edges)).view(2, batch, -1, *rows.shape[1:])  # (2, B, hidden, n, k)
        error = (mapped[0] - mapped[1]).pow(2).mean(dim=(1, 3))                 # (B, n)
        if not self.reweight:
            return error.mean()
        return (importance_weights(scores.gather(1, centres), self.temperature) * error).mean()
