"""Argument checks of the metrics' inputs: point clouds as finite float64 (n, d) tensors."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from distill.errors import DistillError


def as_cloud(name: str, x: object) -> Tensor:
    """``x`` as a finite float64 (n, d) tensor with n >= 2."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise DistillError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}.")
    if x.ndim != 2:
        raise DistillError(
            f"{name} must be 2-D (samples, features), got shape {tuple(x.shape)}; "
            "flatten images with x.flatten(1)."
        )
    if len(x) < 2:
        raise DistillError(f"{name} has {len(x)} sample(s); these metrics need at least 2.")
    x = x.detach().to(torch.float64)
    if not torch.isfinite(x).all():
        raise DistillError(f"{name} contains NaN or infinite values; drop or fix those samples first.")
    return x


def as_pair(x: object, y: object, names: tuple[str, str] = ("x", "y")) -> tuple[Tensor, Tensor]:
    """Two clouds of the same feature space, on ``x``'s device."""
    x, y = as_cloud(names[0], x), as_cloud(names[1], y)
    if x.shape[1] != y.shape[1]:
        raise DistillError(
            f"{names[0]} has {x.shape[1]} features but {names[1]} has {y.shape[1]}; "
            "both must come from the same space (same data shape or feature layer)."
        )
    return x, y.to(x.device)
