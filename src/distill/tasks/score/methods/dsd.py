"""Diverse score distillation (Xu et al., 2024)."""

from __future__ import annotations

import torch
from torch import Tensor

from distill.diffusion.process import broadcast
from distill.engine import draws
from distill.errors import ConfigError, check_count
from distill.tasks.score.methods.base import GUIDANCES, Guidance, NoiseLevels, annealed, without_cfg
from distill.tasks.score.methods.noise import FixedNoise, ddim_path


@GUIDANCES.register("dsd")
class DSD(Guidance):
    """Diverse score distillation (Xu, Srinivasa, Liu & Tulsiani, 2024, arXiv:2412.06780): each particle
    follows the generation path of its own fixed seed, so particles spread over the modes instead of
    collapsing. Per step, with particle i's fixed noise ε*_i (:class:`FixedNoise`, ``seed``):

    1. t falls deterministically from ``t_range`` high to low with √progress; ``t⁺ = t + u·plus_ratio·
       (t − low)``, u ~ U(0, 1), at most 1;
    2. DDIM from x_1 = ε*_i down to t⁺ on the ``path_steps``-step uniform grid of [0, 1] (the grid
       times above t⁺, then t⁺), with the prior's guided ε̂: x_{t⁺}^path;
    3. ``ε_1 = ε̂(x_{t⁺}^path, t⁺, y)`` (guided): the noise of the seed's path at t⁺;
    4. the particle put on that path by interpolation: ``x_{t⁺} = α_{t⁺} x + σ_{t⁺} ε_1`` and
       ``x_t = α_t x + σ_t ε_1``;
    5. ``g = w(t)·(ε̂(x_t, t, y) − ε̂_plain(x_{t⁺}, t⁺, y))``, the first guided, the second with
       guidance scale 1 (plain conditional): in place of SDS's ε, the noise the prior reads a little
       higher on the seed's path.

    This is the estimator of the official code (``BillyXYB/Diverse-Score-Distillation``,
    ``compute_grad_dsd``: ``n_ddim_steps`` 10, ``plus_ratio`` 0.1, w = 1 − ᾱ = σ², √-annealed t),
    written for any (α, σ); its minimum-t⁺ clamp (``delta_min``) is left out. For the exact denoiser of
    one point p, ``g = w(t)·(α_t/σ_t − α_{t⁺}/σ_{t⁺})·(x − p)``: a pull straight to p, zero on it."""

    def __init__(self, t_range: tuple[float, float] = (0.02, 0.98), weighting: str = "sigma2",
                 path_steps: int = 10, plus_ratio: float = 0.1, seed: int = 0) -> None:
        self.levels = NoiseLevels(t_range, "uniform", weighting)
        check_count("path_steps", path_steps)
        if not float(plus_ratio) >= 0.0:
            raise ConfigError(f"plus_ratio (how far t⁺ lies above t) must be >= 0, got {plus_ratio!r}.")
        self.path_steps, self.plus_ratio, self.noise = path_steps, float(plus_ratio), FixedNoise(seed)

    def times(self, n: int, progress: float, device: torch.device) -> tuple[Tensor, Tensor]:
        """(t, t⁺) per sample at training progress ``progress``."""
        t = torch.full((n,), annealed(self.levels.high, self.levels.low, progress), device=device)
        t_plus = t + draws.rand(n, device) * self.plus_ratio * (t - self.levels.low)
        return t, t_plus.clamp(max=1.0)

    def path(self, prior, eps_star: Tensor, t_plus: Tensor, y: Tensor | None) -> Tensor:
        """The seed's DDIM path from x_1 = ε* to t⁺ (steps between grid times below t⁺ stay put)."""
        grid = [1.0 - j / self.path_steps for j in range(self.path_steps + 1)]
        return ddim_path(prior, eps_star, [t_plus.clamp(min=g) for g in grid], y)[0]

    def update(self, x: Tensor, prior, y: Tensor | None = None, progress: float = 0.0,
               index: Tensor | None = None) -> Tensor:
        """The DSD update g for the particles ``index`` at ``x`` (no autograd through the prior)."""
        eps_star = self.noise(index, x, "dsd")
        t, t_plus = self.times(len(x), progress, x.device)
        process, x = prior.process, x.detach()
        with torch.no_grad():
            eps_path = prior.split(self.path(prior, eps_star, t_plus, y), t_plus, y)[1]
            with without_cfg(prior):
                target = prior.split(process.noise(x, eps_path, t_plus), t_plus, y)[1]
            eps_t = prior.split(process.noise(x, eps_path, t), t, y)[1]
        return broadcast(self.levels.weight(process, t), x) * (eps_t - target)

    def evaluations_per_step(self, prior, y: Tensor | None = None) -> int:
        """``path_steps`` path steps, ε̂ at its end and at x_t (guided), one plain conditional call."""
        return (self.path_steps + 2) * prior.evaluations_per_call(y) + 1
