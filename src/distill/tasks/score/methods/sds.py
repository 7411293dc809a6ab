"""Score distillation sampling (Poole et al., 2022, DreamFusion)."""

from __future__ import annotations

import torch
from torch import Tensor

from distill.diffusion.process import broadcast
from distill.engine import draws
from distill.tasks.score.methods.base import GUIDANCES, Guidance, NoiseLevels


@GUIDANCES.register("sds")
class SDS(Guidance):
    """Score distillation sampling (Poole, Jain, Barron & Mildenhall, 2022, "DreamFusion"): the update
    ``w(t)·(ε̂(x_t, t) − ε)`` with ``x_t = α x + σ ε``, applied through ``0.5·‖x − sg(x − g)‖²``.
    Classifier-free guidance comes from the prior's own ``guidance`` scale."""

    def __init__(self, t_range: tuple[float, float] = (0.02, 0.98), schedule: str = "uniform",
                 weighting: str = "sigma2") -> None:
        self.levels = NoiseLevels(t_range, schedule, weighting)

    def update(self, x: Tensor, prior, y: Tensor | None = None, progress: float = 0.0,
               index: Tensor | None = None) -> Tensor:
        """The SDS update g for ``x`` (no autograd through the prior; ``index`` is not used)."""
        t = self.levels.draw(len(x), progress, x.device)
        eps = draws.randn_like(x)
        with torch.no_grad():
            noisy = prior.process.noise(x.detach(), eps, t)
            eps_hat = prior.split(noisy, t, y)[1]
        return broadcast(self.levels.weight(prior.process, t), x) * (eps_hat - eps)

    def evaluations_per_step(self, prior, y: Tensor | None = None) -> int:
        """One (guided) call at x_t."""
        return prior.evaluations_per_call(y)
