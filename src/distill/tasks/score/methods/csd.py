"""Consistency distillation sampling (Wu et al., CVPR 2024, Consistent3D)."""

from __future__ import annotations

import torch
from torch import Tensor

from distill.diffusion.process import broadcast
from distill.diffusion.sampling import SOLVERS, ode_step
from distill.engine import draws
from distill.errors import ConfigError
from distill.tasks.score.methods.base import GUIDANCES, Guidance, annealed, check_weighting, weight
from distill.tasks.score.methods.noise import FixedNoise


@GUIDANCES.register("csd")
class CSD(Guidance):
    """Consistency distillation sampling, "CDS" in the paper (Wu, Zhou, Yi, Yuan & Zhang, CVPR 2024,
    "Consistent3D: Towards Consistent High-Fidelity Text-to-3D Generation with Deterministic Sampling
    Prior"): SDS's fresh noise and single denoising replaced by a fixed noise per particle and one
    step of the probability-flow ODE, whose less noisy end guides the noisier start.

    Per step: ``s`` falls from ``anneal[0]`` to ``anneal[1]`` with √progress, ``t = min(s + δ, t_max)``
    with δ ~ U(``gap``) (the code's ``cur_steps`` / ``perturb_factor`` / ``end_gap``); particle i has its
    fixed ε*_i (:class:`FixedNoise`, ``seed``); ``x_t = α_t x + σ_t ε*_i``; ``x̂_s`` is one ``solver``
    step of the ODE t → s (:func:`~distill.diffusion.sampling.ode_step`; DDIM by default); then

        ``g = w(t)·(ε̂(x_t, t, y) − ε̂(x̂_s, s, y))``

    — SDS with the noise the prior itself predicts one ODE step lower as the target in place of ε; for
    DDIM it equals ``w(t)·(α_s/σ_s)·(x̂0(x̂_s, s) − x̂0(x_t, t))``. This is the estimator of the official
    code (``sail-sg/Consistent3D``, ``compute_grad_consistency`` with ``recon_std_rescale = 0``; its
    ``target = latents + grad`` makes the gradient ``ε̂(x_t) − ε̂(x̂_s)``), written for any (α, σ) and
    solver. ε̂ carries the prior's own guidance scale (the code's is 100 → 50). Defaults follow its
    coarse config (s 0.7 → 0.1, δ ∈ [0.1, 0.3), uniform w). Deviation: the official code shares one
    noise across all views; here each particle has its own. For the exact denoiser of one point ε̂ is
    constant along DDIM and g = 0 wherever the particle is: like ISM, CDS pulls only through the
    prior's guidance and the bending of its trajectories."""

    def __init__(self, anneal: tuple[float, float] = (0.7, 0.1), gap: tuple[float, float] = (0.1, 0.3),
                 t_max: float = 0.98, weighting: str = "uniform", solver: str = "ddim", seed: int = 0) -> None:
        start, end = (float(v) for v in anneal)
        low, high = (float(v) for v in gap)
        if not 0.0 < end <= start:
            raise ConfigError(f"anneal (s at the start, s at the end) must satisfy 0 < end <= start, "
                              f"got {tuple(anneal)}.")
        if not 0.0 < low <= high:
            raise ConfigError(f"gap (range of t − s) must satisfy 0 < low <= high, got {tuple(gap)}.")
        if not start + low <= float(t_max) < 1.0:
            raise ConfigError(f"t_max must satisfy anneal start + gap low ({start + low:g}) <= t_max < 1, "
                              f"got {t_max!r}.")
        if solver not in SOLVERS:
            raise ConfigError(f"unknown ODE solver {solver!r}; choose one of {list(SOLVERS)}.")
        self.anneal, self.gap, self.t_max = (start, end), (low, high), float(t_max)
        self.weighting, self.solver, self.noise = check_weighting(weighting), solver, FixedNoise(seed)

    def times(self, n: int, progress: float, device: torch.device) -> tuple[Tensor, Tensor]:
        """(t, s) per sample at training progress ``progress``: s is deterministic, t − s is jittered."""
        s = torch.full((n,), annealed(*self.anneal, progress), device=device)
        low, high = self.gap
        t = (s + low + (high - low) * draws.rand(n, device)).clamp(max=self.t_max)
        return t, s

    def update(self, x: Tensor, prior, y: Tensor | None = None, progress: float = 0.0,
               index: Tensor | None = None) -> Tensor:
        """The CDS update g for the particles ``index`` at ``x`` (no autograd through the prior)."""
        eps_star = self.noise(index, x, "csd")
        t, s = self.times(len(x), progress, x.device)
        process = prior.process
        with torch.no_grad():
            x_t = process.noise(x.detach(), eps_star, t)
            x0_t, eps_t = prior.split(x_t, t, y)
            # DDIM from the split already in hand is exactly ode_step(..., "ddim"), one call cheaper
            x_s = process.noise(x0_t, eps_t, s) if self.solver == "ddim" else ode_step(prior, x_t, t, s, y, self.solver)
            eps_s = prior.split(x_s, s, y)[1]
        return broadcast(weight(process, t, self.weighting), x) * (eps_t - eps_s)

    def evaluations_per_step(self, prior, y: Tensor | None = None) -> int:
        """Calls at x_t and x̂_s, plus the solver's own (Euler one, Heun two) beyond DDIM's."""
        return (2 + {"ddim": 0, "euler": 1, "heun": 2}[self.solver]) * prior.evaluations_per_call(y)
