"""What every step-distillation objective shares: a student trained with an exponential moving average
of its weights (the weights a method samples with), and the per-sample mean its losses take."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from distill.diffusion.denoiser import Denoiser
from distill.errors import ConfigError
from distill.models.base import frozen


def check_ema_decay(method: str, decay: float) -> float:
    """Refuse an EMA decay outside [0, 1) (0 samples the online weights)."""
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
        raise ConfigError(f"{method}: ema_decay must lie in [0, 1) (0 samples the online weights; the papers "
                          f"use 0.999–0.9999), got {decay!r}.")
    return float(decay)


@torch.no_grad()
def update_ema(ema: nn.Module, online: nn.Module, decay: float, step: int) -> None:
    """``ema ← d·ema + (1 − d)·online`` with ``d = min(decay, (1 + step)/(10 + step))``, the
    warm-up of TensorFlow's ExponentialMovingAverage, so short stages are not dominated by their start."""
    rate = min(decay, (1 + step) / (10 + step))
    for target, weights in zip(ema.parameters(), online.parameters()):
        target.lerp_(weights, 1.0 - rate)
    for target, buffer in zip(ema.buffers(), online.buffers()):
        target.copy_(buffer)


class StudentObjective(nn.Module):
    """Base of the objectives that train ``self.model``: keeps ``self.ema``, an exponential moving
    average of it updated once per optimizer step (Song et al., 2023; Salimans & Ho, 2022 sample
    from EMA weights). ``ema_decay`` 0 makes the EMA a copy of the online weights."""

    def __init__(self, student: Denoiser, ema_decay: float) -> None:
        super().__init__()
        self.model, self.ema_decay = student, ema_decay
        self.ema = frozen(copy.deepcopy(student))

    def after_optimizer_step(self, step: int) -> None:
        update_ema(self.ema, self.model, self.ema_decay, step)


def flat_mean(values: Tensor) -> Tensor:
    """Per-sample mean over all but the batch dimension."""
    return values.flatten(1).mean(dim=1)
