"""Point-cloud classifiers: a PointNet and a DGCNN, both on point sets ``(B, N, 3)``.

Input: ``N`` points of ``(x, y, z)`` per sample, points on the middle axis (as the ``mesh_points`` dataset
gives them); the networks transpose to channels first, ``(B, 3, N)``, inside. Module paths (taps):

- ``pointnet``: ``conv1`` … ``convK`` (shared per-point layers, ``(B, C_k, N)``; ``convK`` holds the
  per-point features right before pooling), ``pool`` (``(B, C_K)``, the max over points) and ``head``.
- ``dgcnn``: ``edge1`` … ``edgeK`` (EdgeConv layers, ``(B, C_k, N)``), ``fuse`` (their outputs
  concatenated and mixed per point, ``(B, embedding, N)``: the per-point features before pooling),
  ``pool`` (``(B, embedding)``) and ``head``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from distill.errors import DistillError, positive_ints
from distill.models.base import MODELS
from distill.models.convnet import checked_shape
from distill.point_graph import edge_linear, knn_indices


class MaxOverPoints(nn.Module):
    """Per-point features ``(B, C, N)`` → one global feature ``(B, C)``: the maximum over the points, the
    symmetric function that makes the network independent of the points' order (Qi et al. 2017)."""

    def forward(self, features: Tensor) -> Tensor:
        return features.amax(dim=2)


def _head(width: int, hidden: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))


class PointNet(nn.Module):
    """PointNet (Qi, Su, Mo & Guibas, CVPR 2017, "PointNet: Deep Learning on Point Sets for 3D Classification
    and Segmentation") without its input and feature transform networks: the same layers (1×1 convolution,
    batch norm, ReLU) on every point, a max over points, and an MLP head."""

    def __init__(self, num_classes: int, channels: tuple[int, ...], hidden: int, dropout: float) -> None:
        super().__init__()
        width = 3
        for i, out in enumerate(channels, start=1):
            self.add_module(f"conv{i}", nn.Sequential(nn.Conv1d(width, out, 1, bias=False), nn.BatchNorm1d(out),
                                                      nn.ReLU()))
            width = out
        self.depth = len(channels)
        self.pool = MaxOverPoints()
        self.head = _head(width, hidden, num_classes, dropout)

    def forward(self, points: Tensor) -> Tensor:
        x = points.transpose(1, 2)
        for i in range(1, self.depth + 1):
            x = getattr(self, f"conv{i}")(x)
        return self.head(self.pool(x))


class EdgeConv(nn.Module):
    """One EdgeConv layer (Wang et al., ACM TOG 2019): ``max_j h(x_j − x_i, x_i)`` over the ``k`` nearest
    neighbours ``j`` of each point in its input features (the graph is rebuilt in every layer: dynamic), with
    ``h`` a shared linear map (``weight``; 1×1 convolution in the paper), batch norm (``norm``) and
    LeakyReLU(0.2)."""

    def __init__(self, c_in: int, c_out: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.weight = nn.Parameter(torch.empty(c_out, 2 * c_in))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's and nn.Linear's initialisation
        self.norm = nn.BatchNorm2d(c_out)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, features: Tensor) -> Tensor:
        edges = edge_linear(features, knn_indices(features, self.k), self.weight)
        return self.act(self.norm(edges)).amax(dim=3)


class DGCNN(nn.Module):
    """DGCNN (Wang, Sun, Liu, Sarma, Bronstein & Solomon, ACM TOG 2019, "Dynamic Graph CNN for Learning on
    Point Clouds"), classification network: EdgeConv layers, their outputs concatenated and mixed per point
    (``fuse``), a max over points and an MLP head (the paper pools max and mean; we pool the max only)."""

    def __init__(self, num_classes: int, channels: tuple[int, ...], k: int, embedding: int, hidden: int,
                 dropout: float) -> None:
        super().__init__()
        width = 3
        for i, out in enumerate(channels, start=1):
            self.add_module(f"edge{i}", EdgeConv(width, out, k))
            width = out
        self.depth = len(channels)
        self.fuse = nn.Sequential(nn.Conv1d(sum(channels), embedding, 1, bias=False), nn.BatchNorm1d(embedding),
                                  nn.LeakyReLU(0.2))
        self.pool = MaxOverPoints()
        self.head = _head(embedding, hidden, num_classes, dropout)

    def forward(self, points: Tensor) -> Tensor:
        x, levels = points.transpose(1, 2), []
        for i in range(1, self.depth + 1):
            x = getattr(self, f"edge{i}")(x)
            levels.append(x)
        return self.head(self.pool(self.fuse(torch.cat(levels, dim=1))))


def _point_shape(model: str, input_shape: Sequence[int], num_classes: int) -> tuple[int, int]:
    hint = " It takes point sets: N points of (x, y, z), e.g. the 'mesh_points' dataset's (256, 3)."
    shape = checked_shape(model, input_shape, num_classes, {2: "(N, 3)"}, hint)
    if shape[1] != 3:
        raise DistillError(f"model {model!r} takes input_shape (N, 3), points on the first axis and (x, y, z) on "
                           f"the second, without the batch dimension; got {tuple(shape)}.{hint}")
    return shape


def _widths(model: str, name: str, value: object, example: str) -> tuple[int, ...]:
    widths = (value,) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(widths, Sequence) or isinstance(widths, str) or not widths or not positive_ints(widths):
        raise DistillError(f"{model}: {name} must be a list of positive layer widths, e.g. {example}; got {value!r}.")
    return tuple(widths)


def _check_head(model: str, hidden: object, dropout: object) -> None:
    if not positive_ints([hidden]):
        raise DistillError(f"{model}: hidden must be a positive integer (the head's width), got {hidden!r}.")
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
        raise DistillError(f"{model}: dropout must be in [0, 1), got {dropout!r}.")


@MODELS.register("pointnet")
def pointnet(input_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (64, 128, 256),
             hidden: int = 128, dropout: float = 0.0) -> nn.Module:
    """PointNet classifier for point sets ``(N, 3)``: per-point layers of ``channels``, max pool, MLP head."""
    _point_shape("pointnet", input_shape, num_classes)
    _check_head("pointnet", hidden, dropout)
    return PointNet(num_classes, _widths("pointnet", "channels", channels, "[64, 128, 256]"), hidden, float(dropout))


@MODELS.register("dgcnn")
def dgcnn(input_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (64, 64, 128), k: int = 16,
          embedding: int = 256, hidden: int = 128, dropout: float = 0.0) -> nn.Module:
    """DGCNN classifier for point sets ``(N, 3)``: EdgeConv layers of ``channels`` on ``k``-nearest-neighbour
    graphs, a per-point ``embedding``, max pool, MLP head."""
    points, _ = _point_shape("dgcnn", input_shape, num_classes)
    _check_head("dgcnn", hidden, dropout)
    widths = _widths("dgcnn", "channels", channels, "[64, 64, 128]")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= points:
        raise DistillError(f"dgcnn: k (neighbours per point) must be an integer in [1, {points}], the number of "
                           f"points, got {k!r}.")
    if not positive_ints([embedding]):
        raise DistillError(f"dgcnn: embedding must be a positive integer (per-point width), got {embedding!r}.")
    return DGCNN(num_classes, widths, k, embedding, hidden, float(dropout))
