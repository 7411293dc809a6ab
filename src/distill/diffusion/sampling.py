"""Samplers: noise → data in a given number of steps, for teachers and students alike.

Every generator answers ``sample(noise, y, steps)`` and ``evaluations(steps, y)``
(network calls per sample, the NFE the tables report), so teachers and every
student method are measured by the same code.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distill.diffusion.denoiser import Denoiser
from distill.diffusion.process import broadcast
from distill.errors import ConfigError, check_count

SOLVERS = ("ddim", "euler", "heun")


def device_of(module: nn.Module | None) -> torch.device:
    """Where ``module``'s weights live (CPU for None or a module without weights)."""
    weights = next(module.parameters(), None) if module is not None else None
    return weights.device if weights is not None else torch.device("cpu")


def time_points(steps: int) -> list[float]:
    """``steps + 1`` uniformly spaced times from 1 (noise) to 0 (data), as Python floats (so a traced
    or exported sampler holds them as constants, not as data)."""
    check_count("steps", steps)
    return [(steps - i) / steps for i in range(steps + 1)]


def ode_step(denoiser: Denoiser, x: Tensor, t: Tensor | float, s: Tensor | float, y: Tensor | None,
             solver: str) -> Tensor:
    """One step of the probability-flow ODE from time ``t`` to ``s < t`` (floats or per-sample).

    'ddim': ``x_s = α_s x̂0 + σ_s ε̂`` (Song et al., ICLR 2021; for the flow process it is
    exactly Euler); 'euler': ``x + (s − t)·dx/dt``; 'heun': Euler, then the average of
    the slopes at both ends — except into s = 0, where it stays Euler, as Karras et al.
    (NeurIPS 2022, Algorithm 1) do: the corrector there would average in the slope at the data
    end and leave about (t/2)·ε̂ of noise in every sample.
    """
    if solver not in SOLVERS:
        raise ConfigError(f"unknown ODE solver {solver!r}; choose one of {list(SOLVERS)}.")
    t, s = (torch.as_tensor(v, dtype=x.dtype, device=x.device).expand(x.shape[0]) for v in (t, s))
    process = denoiser.process
    x0, eps = denoiser.split(x, t, y)
    if solver == "ddim":
        return process.noise(x0, eps, s)
    step = broadcast(s - t, x)
    slope = process.velocity(x0, eps, t)
    euler = x + step * slope
    if solver == "euler":
        return euler
    last = s == 0
    if bool(last.all()):  # the sampler's last step: one evaluation, not two
        return euler
    slope_end = process.velocity(*denoiser.split(euler, s, y), s)
    return torch.where(broadcast(last, x), euler, x + step * 0.5 * (slope + slope_end))


class OdeGenerator:
    """Integrate a denoiser's probability-flow ODE on a uniform time grid."""

    def __init__(self, denoiser: Denoiser, solver: str = "ddim") -> None:
        if solver not in SOLVERS:
            raise ConfigError(f"unknown solver {solver!r}; choose one of {list(SOLVERS)}.")
        self.denoiser, self.solver = denoiser, solver

    @property
    def device(self) -> torch.device:
        return device_of(self.denoiser)

    @torch.no_grad()
    def sample(self, noise: Tensor, y: Tensor | None, steps: int) -> Tensor:
        grid = time_points(steps)
        x = noise
        for t, s in zip(grid[:-1], grid[1:]):
            x = ode_step(self.denoiser, x, t, s, y, self.solver)
        return x

    def evaluations(self, steps: int, y: Tensor | None = None) -> int:
        calls = 2 * steps - 1 if self.solver == "heun" else steps  # Heun's last step into t = 0 is Euler
        return calls * self.denoiser.evaluations_per_call(y)


class RenoisingGenerator:
    """Few-step sampling of a data predictor ``f(x_t, t) → x0``: predict, re-noise to the next
    time with fresh noise from the global RNG, predict again (multistep consistency sampling,
    Song et al., ICML 2023)."""

    def __init__(self, predict_x0, process, evaluations_per_call: int = 1, module: nn.Module | None = None) -> None:
        self.predict_x0, self.process, self.per_call = predict_x0, process, evaluations_per_call
        self.denoiser = module  # the network behind predict_x0 (what a run saves and exports)
        self.device = device_of(module)

    @torch.no_grad()
    def sample(self, noise: Tensor, y: Tensor | None, steps: int) -> Tensor:
        grid = time_points(steps)
        x0 = self.predict_x0(noise, noise.new_ones(noise.shape[0]), y)
        for t in grid[1:-1]:
            fresh = torch.randn_like(noise)
            t_vec = noise.new_full((noise.shape[0],), t)
            x0 = self.predict_x0(self.process.noise(x0, fresh, t_vec), t_vec, y)
        return x0

    def evaluations(self, steps: int, y: Tensor | None = None) -> int:
        return steps * self.per_call
