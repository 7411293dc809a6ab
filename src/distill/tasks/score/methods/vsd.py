"""Variational score distillation (Wang et al., 2023, ProlificDreamer)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from distill.diffusion.objective import denoising_loss
from distill.diffusion.process import broadcast
from distill.diffusion.surrogate import score_distillation_loss
from distill.engine import draws
from distill.errors import ConfigError
from distill.tasks.score.methods.base import GUIDANCES, NoiseLevels


@GUIDANCES.register("vsd")
class VSD:
    """Variational score distillation (Wang et al., NeurIPS 2023, "ProlificDreamer"): a second, online
    score network ε̂_φ (a copy of the prior's network) is fitted to the current particles, and the
    particles move by ``w(t)·(ε̂_prior(x_t) − ε̂_φ(x_t))``; with φ equal to the prior the update is zero.
    ``fake_network(prior)`` builds φ; its denoising loss is returned as ``"fake"`` beside the particles'
    surrogate, so one optimizer step trains both (φ and the particles are separate parameter groups)."""

    def __init__(self, t_range: tuple[float, float] = (0.02, 0.98), schedule: str = "uniform",
                 weighting: str = "sigma2") -> None:
        self.levels = NoiseLevels(t_range, schedule, weighting)

    @staticmethod
    def fake_network(prior) -> nn.Module:
        """φ initialised from the prior's network (ProlificDreamer initialises its LoRA from the prior)."""
        if not hasattr(prior, "net"):
            raise ConfigError("vsd needs a prior with a network to copy (a Denoiser); the exact prior has none.")
        fake = copy.deepcopy(prior)
        fake.cfg_scale = 1.0
        return fake.requires_grad_(True).train()

    def update(self, x: Tensor, prior, fake, y: Tensor | None = None, progress: float = 0.0,
               index: Tensor | None = None) -> Tensor:
        """The VSD update g for ``x`` (no autograd through either score; ``index`` is not used)."""
        t = self.levels.draw(len(x), progress, x.device)
        eps = draws.randn_like(x)
        with torch.no_grad():
            noisy = prior.process.noise(x.detach(), eps, t)
            difference = prior.split(noisy, t, y)[1] - fake.split(noisy, t, y)[1]
        return broadcast(self.levels.weight(prior.process, t), x) * difference

    def loss(self, x: Tensor, prior, fake, *, y: Tensor | None = None, progress: float = 0.0,
             index: Tensor | None = None) -> dict[str, Tensor]:
        """``{"loss", "particles", "fake"}``: the particles' surrogate plus φ's denoising loss on them."""
        particles = score_distillation_loss(x, self.update(x, prior, fake, y, progress))
        fake_loss = denoising_loss(fake, x.detach(), y)
        return {"loss": particles + fake_loss, "particles": particles.detach(), "fake": fake_loss.detach()}

    def evaluations_per_step(self, prior, y: Tensor | None = None) -> int:
        """The prior's call at x_t plus φ's (unguided) one."""
        return prior.evaluations_per_call(y) + 1
