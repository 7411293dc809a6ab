"""Front-to-back alpha compositing, shared by the Gaussian and voxel renderers.

With per-sample alphas ``a_k`` sorted near→far, the transmittance in front of sample ``k`` is
``T_k = prod_{j<k} (1 - a_j)`` and the pixel is ``sum_k T_k a_k c_k + T_K * background``
(Porter & Duff 1984; the quadrature of NeRF's volume rendering, Mildenhall et al. 2020, and
the blending of 3D Gaussian Splatting, Kerbl et al. 2023).
"""

from __future__ import annotations

import torch
from torch import Tensor

from distill.errors import ConfigError


def compositing_weights(alphas: Tensor) -> tuple[Tensor, Tensor]:
    """Weights ``T_k a_k`` ``(..., K)`` and the final transmittance ``T_K`` ``(...)`` of near→far ``alphas``.

    ``T`` is an exclusive cumulative product (a shifted ``cumprod``), so a fully opaque
    sample zeroes everything behind it without any division; ``1 - a`` is clamped at 0 so
    rounding never makes a transmittance negative.
    """
    if not isinstance(alphas, Tensor) or alphas.dim() < 1 or alphas.shape[-1] < 1:
        raise ConfigError(f"alphas must be a tensor of shape (..., K) with K >= 1, got "
                          f"{tuple(alphas.shape) if isinstance(alphas, Tensor) else type(alphas).__name__}.")
    keep = (1.0 - alphas).clamp_min(0.0)
    through = torch.cumprod(keep, dim=-1)
    transmittance = torch.cat([torch.ones_like(through[..., :1]), through[..., :-1]], dim=-1)
    return transmittance * alphas, through[..., -1]


def background_tensor(background, channels: int, like: Tensor, bounded: bool = True) -> Tensor:
    """``background`` (a number or ``channels`` numbers, in [0, 1] when ``bounded``: colours) as a
    ``(channels,)`` tensor like ``like``."""
    value = torch.as_tensor(background, dtype=like.dtype, device=like.device)
    if value.dim() == 0:
        value = value.expand(channels)
    if value.shape != (channels,):
        raise ConfigError(f"background must be a number or {channels} numbers (one per channel), "
                          f"got shape {tuple(value.shape)}.")
    if bounded and not ((value >= 0) & (value <= 1)).all():
        raise ConfigError(f"background must lie in [0, 1], got {value.tolist()}.")
    return value


def composite(alphas: Tensor, colours: Tensor, background=0.0) -> tuple[Tensor, Tensor]:
    """Composite near→far samples: colour ``(..., C)`` and accumulated opacity ``1 - T_K`` ``(...)``.

    ``alphas`` is ``(..., K)``; ``colours`` is ``(..., K, C)`` (its leading dims broadcast
    against ``alphas``'); ``background`` is a number or ``C`` numbers in [0, 1].
    """
    if not isinstance(colours, Tensor) or colours.dim() < 2 or colours.shape[-2] != alphas.shape[-1]:
        raise ConfigError(f"colours must have shape (..., K, C) with K = {alphas.shape[-1]} samples matching "
                          f"alphas {tuple(alphas.shape)}, got "
                          f"{tuple(colours.shape) if isinstance(colours, Tensor) else type(colours).__name__}.")
    weights, final = compositing_weights(alphas)
    colour = (weights[..., None] * colours).sum(dim=-2)
    colour = colour + final[..., None] * background_tensor(background, colours.shape[-1], colour)
    return colour, 1.0 - final
