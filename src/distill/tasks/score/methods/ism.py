"""Interval score matching (Liang et al., CVPR 2024, LucidDreamer)."""

from __future__ import annotations

import torch
from torch import Tensor

from distill.diffusion.process import broadcast
from distill.engine import draws
from distill.errors import ConfigError, check_count
from distill.tasks.score.methods.base import GUIDANCES, Guidance, NoiseLevels, null_condition, without_cfg
from distill.tasks.score.methods.noise import ddim_path


@GUIDANCES.register("ism")
class ISM(Guidance):
    """Interval score matching (Liang, Yang, Lin, Li, Xu & Chen, CVPR 2024, "LucidDreamer"): instead of
    SDS's random ε as the target, the prior's own unconditional noise prediction a short interval lower
    on a deterministic trajectory through x. Per step, with t from ``t_range``/``schedule`` and
    ``s = max(t − interval, t_start)``:

    1. ``x_{t_start} = α x + σ ε`` with fresh ε (LucidDreamer noises x to its first timestep the same way);
    2. ``inversion_steps`` uniform DDIM-inversion steps t_start → s with the unconditional ε̂(·, ∅)
       (the null class, no guidance scale; a prior without classes has only its one prediction): x_s;
    3. one more DDIM-inversion step s → t from ε̂(x_s, s, ∅): x_t;
    4. ``g = w(t)·(ε̂(x_t, t, y) − ε̂(x_s, s, ∅))``, the first with the prior's own classifier-free
       guidance scale (as SDS here), the second being the ε̂ of step 3 (no extra call).

    ``w`` defaults to LucidDreamer's √((1 − ᾱ)/ᾱ) = σ/α. As in LucidDreamer's code the inversion uses
    the unconditional prediction and a fixed DDIM step size; here the steps are uniform in t from
    ``t_start`` to s rather than a fixed timestep stride. For a prior that is the exact denoiser of one
    point DDIM inversion is exact, ε̂(x_t) = ε̂(x_s) and g = 0: ISM's pull comes from the conditional
    term (classifier-free guidance) and from how the prior's trajectories bend."""

    def __init__(self, t_range: tuple[float, float] = (0.02, 0.98), schedule: str = "uniform",
                 weighting: str = "sigma_over_alpha", interval: float = 0.1, inversion_steps: int = 3,
                 t_start: float = 0.01) -> None:
        self.levels = NoiseLevels(t_range, schedule, weighting)
        if not 0.0 < float(interval) < 1.0:
            raise ConfigError(f"interval (t − s of ISM) must lie in (0, 1), got {interval!r}.")
        check_count("inversion_steps", inversion_steps)
        if not 0.0 < float(t_start) < self.levels.low:
            raise ConfigError(f"t_start must lie in (0, t_range low = {self.levels.low}), got {t_start!r}.")
        self.interval, self.inversion_steps, self.t_start = float(interval), inversion_steps, float(t_start)

    def interval_points(self, x: Tensor, prior, t: Tensor, eps: Tensor,
                        y: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(s, x_s, x_t, ε̂(x_s, s, ∅)) for particles ``x`` at levels ``t`` with starting noise ``eps``."""
        s = (t - self.interval).clamp(min=self.t_start)
        start = torch.full_like(t, self.t_start)
        k = self.inversion_steps
        grid = [start + (s - start) * j / k for j in range(k + 1)]
        null = null_condition(prior, y)
        with without_cfg(prior):
            x_s, _ = ddim_path(prior, prior.process.noise(x, eps, start), grid, null)
            x_t, eps_s = ddim_path(prior, x_s, [s, t], null)
        return s, x_s, x_t, eps_s

    def update(self, x: Tensor, prior, y: Tensor | None = None, progress: float = 0.0,
               index: Tensor | None = None) -> Tensor:
        """The ISM update g for ``x`` (no autograd through the prior; ``index`` is not used)."""
        t = self.levels.draw(len(x), progress, x.device)
        with torch.no_grad():
            _, _, x_t, eps_s = self.interval_points(x.detach(), prior, t, draws.randn_like(x), y)
            eps_t = prior.split(x_t, t, y)[1]
        return broadcast(self.levels.weight(prior.process, t), x) * (eps_t - eps_s)

    def evaluations_per_step(self, prior, y: Tensor | None = None) -> int:
        """``inversion_steps + 1`` unconditional calls, then one (guided) call at x_t."""
        return self.inversion_steps + 1 + prior.evaluations_per_call(y)
