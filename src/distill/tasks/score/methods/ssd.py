"""Stable score distillation (Tang, Wang, Wu & Zhang, 2023)."""

from __future__ import annotations

import torch
from torch import Tensor

from distill.diffusion.process import broadcast
from distill.engine import draws
from distill.errors import ConfigError
from distill.tasks.score.methods.base import GUIDANCES, Guidance, NoiseLevels, split_both, split_both_evaluations


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a.flatten(1) * b.flatten(1)).sum(dim=1)


@GUIDANCES.register("ssd")
class SSD(Guidance):
    """Stable score distillation (Tang, Wang, Wu & Zhang, 2023, arXiv:2312.09305, "Stable Score
    Distillation for High-Quality 3D Generation"). SDS with classifier-free guidance splits into a
    mode-disengaging term ε̂(x_t, y) − ε̂(x_t, ∅), a mode-seeking term ε̂(x_t, y) and a variance-reducing
    term −ε; SSD uses them by noise level. With x_t = α x + σ ε (fresh ε), ε̂ without the prior's own
    guidance scale, and ``h = w(t)·(ε̂(x_t, y) − ε̂(x_t, ∅))``:

    - t > ``switch_t``: ``g = h`` (mode-disengaging only);
    - t ≤ ``switch_t``: ``g = ‖h‖/‖ε̃‖ · ε̃`` with ``ε̃ = ε̂(x_t, y) − (⟨ε̂(x_t, y), ε⟩/‖ε‖²)·ε``: the
      mode-seeking term with the least-squares multiple of ε as its control variate (the part of ε̂
      orthogonal to ε) in place of SDS's −ε, rescaled to the norm of the mode-disengaging term.

    Written after the estimator as PGC-3D's reproduction implements it (``fudan-zvg/PGC-3D``,
    ``guidance/sd.py``, ``--ssd``), per sample; that code's projection coefficient divides by ‖ε‖
    once over the whole batch, here it is the per-sample ⟨ε̂, ε⟩/‖ε‖². Its threshold is 100 of 1,000
    steps; ``switch_t`` defaults to 0.2 (our choice). For a prior without classes (or ``y=None``)
    ε̂(y) = ε̂(∅), h = 0 and so g = 0: SSD needs a conditional prior."""

    def __init__(self, t_range: tuple[float, float] = (0.02, 0.98), schedule: str = "uniform",
                 weighting: str = "sigma2", switch_t: float = 0.2) -> None:
        self.levels = NoiseLevels(t_range, schedule, weighting)
        if not 0.0 <= float(switch_t) <= 1.0:
            raise ConfigError(f"switch_t (where SSD turns to its mode-seeking term) must lie in [0, 1], "
                              f"got {switch_t!r}.")
        self.switch_t = float(switch_t)

    @staticmethod
    def combine(eps_cond: Tensor, eps_uncond: Tensor, eps: Tensor, w: Tensor, seeking: Tensor) -> Tensor:
        """g from the conditional and unconditional ε̂, the drawn ε, the weight w (B,) and a mask (B,) of
        the rows that take the mode-seeking branch."""
        h = broadcast(w, eps) * (eps_cond - eps_uncond)
        tilde = eps_cond - broadcast(_dot(eps_cond, eps) / _dot(eps, eps).clamp(min=1e-12), eps) * eps
        scale = h.flatten(1).norm(dim=1) / tilde.flatten(1).norm(dim=1).clamp(min=1e-12)
        return torch.where(broadcast(seeking, eps), broadcast(scale, eps) * tilde, h)

    def update(self, x: Tensor, prior, y: Tensor | None = None, progress: float = 0.0,
               index: Tensor | None = None) -> Tensor:
        """The SSD update g for ``x`` (no autograd through the prior; ``index`` is not used)."""
        t = self.levels.draw(len(x), progress, x.device)
        eps = draws.randn_like(x)
        with torch.no_grad():
            (_, eps_cond), (_, eps_uncond) = split_both(prior, prior.process.noise(x.detach(), eps, t), t, y)
        return self.combine(eps_cond, eps_uncond, eps, self.levels.weight(prior.process, t), t <= self.switch_t)

    def evaluations_per_step(self, prior, y: Tensor | None = None) -> int:
        """Conditional and unconditional ε̂ at x_t (one call for an unconditional prior)."""
        return split_both_evaluations(prior, y)
