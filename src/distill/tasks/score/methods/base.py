"""What every guidance shares: its registry, the noise level drawn per step, the weighting w(t), the
surrogate loss and the prior's conditional / unconditional predictions."""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import Tensor

from distill.diffusion.cfg import NULL_CLASS, conditional_and_null
from distill.diffusion.process import Process
from distill.diffusion.surrogate import score_distillation_loss
from distill.engine import draws
from distill.errors import ConfigError
from distill.registry import Registry

#: name → guidance class; ``Guidance(**options).loss(x, prior, progress)`` returns named scalars.
GUIDANCES = Registry("guidance")

#: w(t) as a function of the process coefficients (α, σ) at t (DreamFusion's choices, Poole et al. 2022):
#: ``sigma2`` = 1 − ᾱ_t (with ᾱ = α²), ``uniform`` = 1, ``alpha_sigma`` = √(ᾱ(1 − ᾱ)) = α·σ;
#: ``sigma_over_alpha`` = √((1 − ᾱ)/ᾱ) = σ/α, LucidDreamer's ISM weight (Liang et al., CVPR 2024).
WEIGHTINGS = {
    "sigma2": lambda alpha, sigma: sigma**2,
    "uniform": lambda alpha, sigma: torch.ones_like(sigma),
    "alpha_sigma": lambda alpha, sigma: alpha * sigma,
    "sigma_over_alpha": lambda alpha, sigma: sigma / alpha.clamp(min=1e-6),
}
SCHEDULES = ("uniform", "sqrt_anneal")


def check_weighting(weighting: str) -> str:
    """``weighting`` if it names a :data:`WEIGHTINGS` entry, else a ConfigError listing them."""
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"unknown weighting {weighting!r}; choose one of {sorted(WEIGHTINGS)}.")
    return weighting


def weight(process: Process, t: Tensor, weighting: str) -> Tensor:
    """w(t) per sample under the named weighting."""
    alpha, sigma, _, _ = process.coefficients(t)
    return WEIGHTINGS[weighting](alpha, sigma)


def annealed(start: float, end: float, progress: float) -> float:
    """``start`` moved to ``end`` with the square root of training progress ∈ [0, 1] (DreamTime-style
    annealing, as the Consistent3D and DSD code anneal their timesteps)."""
    return start + (end - start) * math.sqrt(min(max(progress, 0.0), 1.0))


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
        self.low, self.high, self.schedule, self.weighting = low, high, schedule, check_weighting(weighting)

    def draw(self, n: int, progress: float, device: torch.device) -> Tensor:
        """``n`` noise levels at training progress ``progress`` ∈ [0, 1]."""
        high = annealed(self.high, self.low, progress) if self.schedule == "sqrt_anneal" else self.high
        return self.low + (max(high, self.low + 1e-4) - self.low) * draws.rand(n, device)

    def weight(self, process: Process, t: Tensor) -> Tensor:
        """w(t) per sample."""
        return weight(process, t, self.weighting)


class Guidance:
    """Shared by the guidances whose whole output is one update g: ``loss`` is the surrogate
    ``0.5·‖x − sg(x − g)‖²`` whose gradient in ``x`` is g. Subclasses give ``update``."""

    def update(self, x: Tensor, prior, y: Tensor | None = None, progress: float = 0.0,
               index: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def loss(self, x: Tensor, prior, *, y: Tensor | None = None, progress: float = 0.0,
             index: Tensor | None = None) -> dict[str, Tensor]:
        """``{"loss": surrogate}`` whose gradient in ``x`` is :meth:`update`."""
        return {"loss": score_distillation_loss(x, self.update(x, prior, y, progress, index))}


def is_conditional(prior, y: Tensor | None) -> bool:
    """Whether ``y`` is a class label the prior can drop (a class-conditional prior given labels)."""
    return y is not None and bool(getattr(prior, "num_classes", 0))


def null_condition(prior, y: Tensor | None) -> Tensor | None:
    """The conditioning of the prior's unconditional prediction: the null class of classifier-free
    guidance (:data:`~distill.diffusion.cfg.NULL_CLASS`) for a class-conditional prior; otherwise ``y`` as it is (a prior without
    classes has one prediction; a pose vector is not dropped, a view-conditioned net has no null pose)."""
    return torch.full_like(y, NULL_CLASS) if is_conditional(prior, y) else y


@contextmanager
def without_cfg(prior):
    """The prior with its classifier-free guidance scale set to 1 (plain conditional predictions)."""
    scale = getattr(prior, "cfg_scale", None)
    if scale is not None:
        prior.cfg_scale = 1.0
    try:
        yield prior
    finally:
        if scale is not None:
            prior.cfg_scale = scale


def split_both(prior, x: Tensor, t: Tensor, y: Tensor | None) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """((x̂0, ε̂) conditional, (x̂0, ε̂) unconditional) at ``(x, t)``, both without the prior's guidance
    scale, in one batch of 2B (:func:`~distill.diffusion.cfg.conditional_and_null`). For a prior without classes or
    ``y=None`` the two are the same single call. Costs :func:`split_both_evaluations`."""
    with without_cfg(prior):
        if not is_conditional(prior, y):
            out = prior.split(x, t, y)
            return out, out
        return conditional_and_null(prior.split, x, t, y)


def split_both_evaluations(prior, y: Tensor | None) -> int:
    """Network evaluations one :func:`split_both` costs."""
    return 2 if is_conditional(prior, y) else 1

