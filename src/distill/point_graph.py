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


def _centres(features: Tensor, indices: Tensor, centres: Tensor | None) -> Tensor:
    """``centres`` ``(B, M)`` (default: every point, in order), checked against ``indices`` ``(B, M, k)``."""
    _check_features(features)
    batch, _, points = features.shape
    if centres is None:
        centres = torch.arange(points, device=features.device).expand(batch, points)
    if centres.dim() != 2 or centres.shape[0] != batch or indices.dim() != 3 or indices.shape[:2] != centres.shape:
        raise DistillError(f"indices must be (B, M, k) for the M centres (B, M) = {tuple(centres.shape)} of features "
                           f"{tuple(features.shape)}, got {tuple(indices.shape)}.")
    return centres


def _rows(values: Tensor, index: Tensor) -> Tensor:
    """``values`` ``(B, N, D)`` at ``index`` ``(B, ...)``: ``(B, ..., D)``."""
    flat = index.reshape(index.shape[0], -1, 1).expand(-1, -1, values.shape[2])
    return values.gather(1, flat).view(*index.shape, values.shape[2])


def edge_features(features: Tensor, indices: Tensor, centres: Tensor | None = None) -> Tensor:
    """``(B, 2C, M, k)``: for centre point ``i`` (the ``M`` points ``centres`` ``(B, M)``, default every point
    in order) and its ``m``-th neighbour ``j = indices[b, i, m]`` (``indices`` ``(B, M, k)``), the channels
    ``x_j − x_i`` followed by ``x_i`` (DGCNN's EdgeConv input); differentiable in ``features`` ``(B, C, N)``."""
    centres = _centres(features, indices, centres)
    x = features.transpose(1, 2)                                     # (B, N, C)
    neighbours, own = _rows(x, indices), _rows(x, centres).unsqueeze(2).expand(-1, -1, indices.shape[2], -1)
    return torch.cat([neighbours - own, own], dim=3).permute(0, 3, 1, 2)


def edge_linear(features: Tensor, indices: Tensor, weight: Tensor, bias: Tensor | None = None,
                centres: Tensor | None = None) -> Tensor:
    """``(B, D, M, k)``: the linear map ``weight`` ``(D, 2C)`` (plus ``bias``) of :func:`edge_features`, equal
    to ``weight @ edge_features(features, indices, centres) + bias`` over the channel axis, computed as
    ``W_a x_j + (W_b − W_a) x_i + b`` with ``weight = [W_a | W_b]``: one product per point, not per edge, and
    no ``(B, 2C, M, k)`` tensor (the split DGCNN's authors use too)."""
    centres = _centres(features, indices, centres)
    channels = features.shape[1]
    if weight.dim() != 2 or weight.shape[1] != 2 * channels:
        raise DistillError(f"an edge layer's weight must be (D, 2C) = (D, {2 * channels}) for {channels}-channel "
                           f"features, got {tuple(weight.shape)}.")
    x = features.transpose(1, 2)                                     # (B, N, C)
    neighbour_part = x @ weight[:, :channels].T                      # (B, N, D)
    own_part = torch.nn.functional.linear(x, weight[:, channels:] - weight[:, :channels], bias)
    edges = _rows(neighbour_part, indices) + _rows(own_part, centres).unsqueeze(2)
    return edges.permute(0, 3, 1, 2)
