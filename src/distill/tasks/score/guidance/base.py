"""What every guidance shares: its registry, the noise level drawn per step and the weighting w(t)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from distill.diffusion.process import Process
from distill.errors import ConfigError
from distill.registry import Registry

#: name → guidance class; ``Guidance(**options).loss(x, prior, progress)`` returns named scalars.
GUIDANCES = Registry("guidance")

#: w(t) as a function of the process coefficients (α, σ) at t (DreamFusion's choices, Poole et al. 2022):
#: ``sigma2`` = 1 − ᾱ_t (with ᾱ = α²), ``uniform`` = 1, ``alpha_sigma`` = √(ᾱ(1 − ᾱ)) = α·σ.
WEIGHTINGS = {
    "sigma2": lambda alpha, sigma: sigma**2,
    "uniform": lambda alpha, sigma: torch.ones_like(sigma),
    "alpha_sigma": lambda alpha, sigma: alpha * sigma,
}
SCHEDULES = ("uniform", "sqrt_anneal")


class NoiseLevels:
    """Draws t ∈ [low, high] per sample; ``sqrt_anneal`` lowers the upper end with the square root of
    training progress (high → low, as DreamFusion follow-ups anneal the timestep)."""

    def __init__(self, t_range: tuple[float, float] = (0.02, 0.98), schedule: str = "uniform",
                 weighting: str = "sigma2") -> None:
        low, high = (float(v) for v in t_range)
        if not 0.0 < low < high < 1.0:
            raise ConfigError(f"t_range must satisfy 0 < low < high < 1, got {tuple(t_range)}.")
        if schedule not in SCHEDULES:
            raise ConfigError(f"unknown t schedule {schedule!r}; choose one of {list(SCHEDULES)}.")
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"unknown weighting {weighting!r}; choose one of {sorted(WEIGHTINGS)}.")
        self.low, self.high, self.schedule, self.weighting = low, high, schedule, weighting

    def draw(self, n: int, progress: float, device: torch.device) -> Tensor:
        """``n`` noise levels at training progress ``progress`` ∈ [0, 1]."""
        high = self.high
        if self.schedule == "sqrt_anneal":
            high = self.high - (self.high - self.low) * math.sqrt(min(max(progress, 0.0), 1.0))
        return self.low + (max(high, self.low + 1e-4) - self.low) * torch.rand(n, device=device)

    def weight(self, process: Process, t: Tensor) -> Tensor:
        """w(t) per sample."""
        alpha, sigma, _, _ = process.coefficients(t)
        return WEIGHTINGS[self.weighting](alpha, sigma)
