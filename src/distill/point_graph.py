"""k-nearest-neighbour graphs over per-point features, and the edge features of EdgeConv.

From DGCNN (Wang, Sun, Liu, Sarma, Bronstein & Solomon, ACM TOG 2019, "Dynamic Graph CNN for Learning on
Point Clouds"): each point ``i`` is joined to its ``k`` nearest points in the current feature space (itself
included, first), and edge ``(i, j)`` carries ``(x_j − x_i, x_i)``: the neighbour seen from the point, and
the point itself. The DGCNN-style model of the zoo and the PointDistiller loss (Zhang et al., CVPR 2023)
build their graphs with these two functions. Features are channels first, ``(B, C, N)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from distill.errors import DistillError


def _check_features(features: Tensor) -> None:
    if not isinstance(features, Tensor) or features.dim() != 3:
        got = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise DistillError(f"point features must be a (B, C, N) tensor (channels first), got {got}.")


@torch.no_grad()
def knn_indices(features: Tensor, k: int) -> Tensor:
    """``(B, N, k)`` long indices of each point's ``k`` nearest points in ``features`` ``(B, C, N)`` by
    Euclidean distance, nearest first; the point itself always comes first (even among duplicates)."""
    _check_features(features)
    points = features.shape[2]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= points:
        raise DistillError(f"k must be an integer in [1, {points}] (the number of points), got {k!r}.")
    x = features.detach().float().transpose(1, 2)                    # (B, N, C)
    distances = torch.cdist(x, x)
    distances.diagonal(dim1=1, dim2=2).fill_(-1.0)                   # self first
    return distances.topk(k, dim=-1, largest=False).indices


def edge_features(features: Tensor, indices: Tensor, centres: Tensor | None = None) -> Tensor:
    """``(B, 2C, M, k)``: for centre point ``i`` (the ``M`` points ``centres`` ``(B, M)``, default every point
    in order) and its ``m``-th neighbour ``j = indices[b, i, m]`` (``indices`` ``(B, M, k)``), the channels
    ``x_j − x_i`` followed by ``x_i`` (DGCNN's EdgeConv input); differentiable in ``features`` ``(B, C, N)``."""
    _check_features(features)
    batch, channels, points = features.shape
    if centres is None:
        centres = torch.arange(points, device=features.device).expand(batch, points)
    if centres.dim() != 2 or centres.shape[0] != batch or indices.dim() != 3 or indices.shape[:2] != centres.shape:
        raise DistillError(f"indices must be (B, M, k) for the M centres (B, M) = {tuple(centres.shape)} of features "
                           f"{tuple(features.shape)}, got {tuple(indices.shape)}.")
    x = features.transpose(1, 2)                                     # (B, N, C)
    k = indices.shape[2]
    neighbours = x.gather(1, indices.reshape(batch, -1, 1).expand(-1, -1, channels)).view(batch, -1, k, channels)
    own = x.gather(1, centres.unsqueeze(-1).expand(-1, -1, channels)).unsqueeze(2).expand(-1, -1, k, -1)
    return torch.cat([neighbours - own, own], dim=3).permute(0, 3, 1, 2)
