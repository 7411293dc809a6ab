"""Projectors that make a student tensor comparable with a teacher tensor.

Built from the shapes seen in one dummy forward pass (FitNet's regressor, Romero et
al. 2015, generalised): channels are projected by a linear map or 1×1 convolution,
spatial sizes are resized, token sequences ``(B, N, D)`` and feature maps
``(B, C, H, W)`` are reshaped into each other. What is built depends on what the
loss needs (``DistillLoss.requires``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from distill.errors import DistillError

Layout = Literal["auto", "channels_first", "tokens"]

#: Modules whose 3-D outputs are token sequences (B, N, D) rather than maps (B, C, L).
_TOKEN_MODULES = (nn.Linear, nn.LayerNorm, nn.MultiheadAttention, nn.TransformerEncoderLayer)


def infer_layout(module: nn.Module, layout: Layout = "auto") -> Literal["channels_first", "tokens"]:
    """Whether a 3-D tensor produced by ``module`` is a token sequence or a channel-first map."""
    if layout != "auto":
        return layout
    name = type(module).__name__
    if isinstance(module, _TOKEN_MODULES) or name.endswith(("Block", "Layer")) and "Conv" not in name:
        return "tokens"
    return "channels_first"


def _square_side(n: int) -> int | None:
    side = math.isqrt(n)
    return side if side * side == n else None


class ToChannelsFirst(nn.Module):
    """Tokens ``(B, N, D)`` → map ``(B, D, N)``, or ``(B, D, h, w)`` when ``grid`` is given.

    With ``drop_class_token`` the first token (a ViT's [CLS]) is removed first.
    """

    def __init__(self, grid: tuple[int, int] | None = None, drop_class_token: bool = False) -> None:
        super().__init__()
        self.grid = grid
        self.drop_class_token = drop_class_token

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.drop_class_token:
            tokens = tokens[:, 1:]
        maps = tokens.transpose(1, 2)
        return maps.reshape(maps.shape[0], maps.shape[1], *self.grid) if self.grid else maps


class ToTokens(nn.Module):
    """Map ``(B, C, *spatial)`` → tokens ``(B, prod(spatial), C)``."""

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return maps.flatten(2).transpose(1, 2)


class Resize(nn.Module):
    """Resize the spatial dims of a channel-first map: average-pool down, interpolate up."""

    def __init__(self, size: tuple[int, ...]) -> None:
        super().__init__()
        self.size = tuple(size)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        if tuple(maps.shape[2:]) == self.size:
            return maps
        if all(s >= t for s, t in zip(maps.shape[2:], self.size)):
            pool = F.adaptive_avg_pool1d if maps.dim() == 3 else F.adaptive_avg_pool2d
            return pool(maps, self.size)
        mode = "linear" if maps.dim() == 3 else "bilinear"
        return F.interpolate(maps, size=self.size, mode=mode, align_corners=False)


class GlobalPool(nn.Module):
    """Map ``(B, C, *spatial)`` → vector ``(B, C)`` by averaging over space."""

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return maps.flatten(2).mean(dim=2)


class OrthogonalProjector(nn.Module):
    """A (semi-)orthogonal linear map on dim 1 (channels), kept orthogonal by parametrisation.

    As in VkD (Miles, Elezi & Deng, CVPR 2024, "VkD: Improving Knowledge Distillation
    using Orthogonal Projections"): the projection cannot distort the student's features.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.linear = nn.utils.parametrizations.orthogonal(nn.Linear(c_in, c_out, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.movedim(1, -1)).movedim(-1, 1)


def _channel_projector(rank: int, c_in: int, c_out: int, kind: str = "linear") -> nn.Module:
    if kind == "orthogonal":
        return OrthogonalProjector(c_in, c_out)
    if rank == 2:
        return nn.Linear(c_in, c_out)
    conv = nn.Conv1d if rank == 3 else nn.Conv2d
    return conv(c_in, c_out, kernel_size=1)


def _fail(pair: str, student: tuple, teacher: tuple, why: str) -> DistillError:
    return DistillError(
        f"cannot adapt {pair}: student tensor {tuple(student)} vs teacher tensor {tuple(teacher)} — {why}"
    )


def _to_channels_first(shape: tuple, layout: str, target_spatial: tuple | None) -> tuple[list[nn.Module], tuple]:
    """Modules turning a tensor of ``shape``/``layout`` into a channel-first map, and its new shape."""
    if len(shape) != 3 or layout != "tokens":
        return [], tuple(shape)
    batch, n, dim = shape
    if target_spatial is None or len(target_spatial) != 2:
        return [ToChannelsFirst()], (batch, dim, n)
    for drop in (False, True):
        side = _square_side(n - int(drop))
        if side is not None:
            return [ToChannelsFirst((side, side), drop)], (batch, dim, side, side)
    return [ToChannelsFirst()], (batch, dim, n)


def build_adapters(
    student_shape: tuple,
    teacher_shape: tuple,
    requires: str,
    pair: str,
    student_layout: str = "channels_first",
    teacher_layout: str = "channels_first",
    projector: str = "linear",
    project: bool = False,
) -> tuple[nn.Module, nn.Module]:
    """``(student_adapter, teacher_adapter)`` making the two tensors meet ``requires``.

    ``identical``: shapes must already match (logits); ``same_batch``: only the batch;
    ``same_spatial``: both become channel-first maps of the teacher's spatial size;
    ``same_positions``: both become channel-first maps of the same (never resized) positions, the
    student's channels projected onto the teacher's;
    ``same_shape``: the student is projected onto the teacher's exact shape (trainable;
    ``projector="orthogonal"`` keeps the channel map orthogonal). ``project=True``
    always builds that trainable projector, even when the shapes already agree.
    Layouts only matter for 3-D tensors. The teacher adapter never has parameters.
    """
    student_shape, teacher_shape = tuple(student_shape), tuple(teacher_shape)
    if len(student_shape) != 3:
        student_layout = "channels_first"
    if len(teacher_shape) != 3:
        teacher_layout = "channels_first"
    if student_shape[0] != teacher_shape[0]:
        raise _fail(pair, student_shape, teacher_shape, "batch sizes differ; both models must see the same batch.")
    if requires == "same_positions":
        return _position_adapters(student_shape, teacher_shape, pair, student_layout, teacher_layout, projector, project)
    if project:
        requires = "same_shape"
    if requires == "same_batch" or (
        not project and student_shape == teacher_shape and student_layout == teacher_layout
    ):
        return nn.Identity(), nn.Identity()
    if requires == "identical":
        raise _fail(pair, student_shape, teacher_shape, "this loss compares the tensors element by element "
                    "(e.g. logits over the same classes) and no projector is meaningful; tap tensors of equal shape.")

    teacher_mods, teacher_cf = _to_channels_first(teacher_shape, teacher_layout, None)
    student_mods, student_cf = _to_channels_first(student_shape, student_layout, teacher_cf[2:])
    if len(student_cf) == 4 and len(teacher_cf) == 3:  # a 2-D map meets a token sequence
        student_mods.append(nn.Flatten(2))
        student_cf = (*student_cf[:2], student_cf[2] * student_cf[3])
    if requires == "same_spatial":
        if len(student_cf) != len(teacher_cf) or len(teacher_cf) < 3:
            raise _fail(pair, student_shape, teacher_shape, "this loss needs two feature maps with the same "
                        "number of spatial dims (B, C, L) or (B, C, H, W); tap convolutional or token features.")
        return nn.Sequential(*student_mods, Resize(teacher_cf[2:])), nn.Sequential(*teacher_mods)
    if requires != "same_shape":
        raise DistillError(f"unknown loss requirement {requires!r} for {pair}.")

    # same_shape: project the student onto the teacher's channels, space and layout.
    if len(teacher_cf) == 2 and len(student_cf) > 2:
        student_mods.append(GlobalPool())
        student_cf = student_cf[:2]
    if len(student_cf) == 2 and len(teacher_cf) > 2:  # a vector regresses the whole flattened map
        flat = _channel_projector(2, student_cf[1], math.prod(teacher_cf[1:]), projector)
        student_mods += [flat, nn.Unflatten(1, teacher_cf[1:])]
    elif len(student_cf) != len(teacher_cf):
        raise _fail(pair, student_shape, teacher_shape, "these feature ranks cannot be projected onto each other.")
    else:
        student_mods.append(_channel_projector(len(teacher_cf), student_cf[1], teacher_cf[1], projector))
        if len(teacher_cf) > 2:
            student_mods.append(Resize(teacher_cf[2:]))
    if teacher_layout == "tokens" and len(teacher_shape) == 3:
        student_mods.append(ToTokens())
    return nn.Sequential(*student_mods), nn.Identity()


def _position_adapters(student_shape: tuple, teacher_shape: tuple, pair: str, student_layout: str,
                       teacher_layout: str, projector: str, project: bool) -> tuple[nn.Module, nn.Module]:
    """``same_positions``: both sides as channel-first maps of the same positions, the student's channels
    projected onto the teacher's when they differ (or ``project``); positions are never resized, as
    resizing a point set would blend unrelated points."""
    teacher_mods, teacher_cf = _to_channels_first(teacher_shape, teacher_layout, None)
    student_mods, student_cf = _to_channels_first(student_shape, student_layout, None)
    if len(student_cf) < 3 or student_cf[2:] != teacher_cf[2:]:
        raise _fail(pair, student_shape, teacher_shape, "this loss compares the two tensors position by position "
                    "(e.g. per-point features (B, C, N) of the same points), so both need the same positions; "
                    "tap layers that keep every input point on both sides.")
    if project or student_cf[1] != teacher_cf[1]:
        student_mods.append(_channel_projector(len(student_cf), student_cf[1], teacher_cf[1], projector))
    return nn.Sequential(*student_mods), nn.Sequential(*teacher_mods)


def describe_projector(adapter: nn.Module) -> str:
    """One line naming the steps of an adapter, e.g. ``Linear(8 → 4608) + Unflatten(→ (32, 12, 12))``."""
    steps = list(adapter) if isinstance(adapter, nn.Sequential) else [adapter]
    return " + ".join(_describe_step(step) for step in steps) or "Identity"


def _describe_step(step: nn.Module) -> str:
    name = type(step).__name__
    if isinstance(step, nn.Linear):
        return f"{name}({step.in_features} → {step.out_features})"
    if isinstance(step, nn.modules.conv._ConvNd):
        kernel = "×".join(map(str, step.kernel_size))
        return f"{name}({step.in_channels} → {step.out_channels}, {kernel})"
    if isinstance(step, OrthogonalProjector):
        linear = step.linear
        return f"{name}({linear.in_features} → {linear.out_features})"
    if isinstance(step, nn.Unflatten):
        return f"{name}(→ {tuple(step.unflattened_size)})"
    if isinstance(step, Resize):
        return f"{name}(→ {step.size})"
    return name
