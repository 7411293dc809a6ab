"""Noising processes ``x_t = α(t)·x0 + σ(t)·ε`` with t ∈ [0, 1] (0 = data, 1 = noise).

One interface serves diffusion and flow matching: a network predicts one linear
combination of (x0, ε) — its *parameterisation* — and :meth:`Process.split` solves
the 2×2 system ``x_t = α x0 + σ ε``, ``pred = a x0 + b ε`` for both. Every sampler
and distillation method works on (x0, ε) and so never cares which parameterisation
or process produced them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from distill.errors import ConfigError
from distill.registry import Registry

PROCESSES = Registry("process")

#: What a network may predict, as coefficients (a, b) of ``a·x0 + b·ε`` given (α, σ, α', σ').
PREDICTIONS = {
    "eps": lambda a, s, da, ds: (torch.zeros_like(a), torch.ones_like(a)),  # Ho et al., 2020
    "x0": lambda a, s, da, ds: (torch.ones_like(a), torch.zeros_like(a)),
    "v": lambda a, s, da, ds: (-s, a),  # Salimans & Ho, 2022: v = α ε − σ x0
    "velocity": lambda a, s, da, ds: (da, ds),  # dx_t/dt, flow matching (Lipman et al., 2023)
}


def broadcast(values: Tensor, like: Tensor) -> Tensor:
    """Per-sample ``values`` (B,) reshaped to broadcast against ``like`` (B, ...)."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


class Process:
    """A noising path; subclasses give α, σ and their time derivatives."""

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(α, σ, dα/dt, dσ/dt) at times ``t``."""
        raise NotImplementedError

    def noise(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """``x_t = α(t) x0 + σ(t) ε``."""
        alpha, sigma, _, _ = self.coefficients(t)
        return broadcast(alpha, x0) * x0 + broadcast(sigma, x0) * eps

    def target(self, prediction: str, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """What a network of parameterisation ``prediction`` should output at (x_t, t)."""
        a, b = self._pred_coefficients(prediction, t, x0)
        return a * x0 + b * eps

    def split(self, prediction: str, x_t: Tensor, pred: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(x0, ε) implied by the network output ``pred`` at ``(x_t, t)``."""
        alpha, sigma, _, _ = (broadcast(c, x_t) for c in self.coefficients(t))
        a, b = self._pred_coefficients(prediction, t, x_t)
        det = alpha * b - sigma * a
        x0 = (b * x_t - sigma * pred) / det
        eps = (alpha * pred - a * x_t) / det
        return x0, eps

    def velocity(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """``dx_t/dt = α'(t) x0 + σ'(t) ε``: the probability-flow ODE's right-hand side."""
        _, _, d_alpha, d_sigma = self.coefficients(t)
        return broadcast(d_alpha, x0) * x0 + broadcast(d_sigma, x0) * eps

    def _pred_coefficients(self, prediction: str, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        if prediction not in PREDICTIONS:
            raise ConfigError(f"unknown prediction {prediction!r}; choose one of {sorted(PREDICTIONS)}.")
        a, b = PREDICTIONS[prediction](*self.coefficients(t))
        return broadcast(a, like), broadcast(b, like)


@PROCESSES.register("flow")
class FlowProcess(Process):
    """Linear interpolation ``x_t = (1 − t) x0 + t ε``: rectified flow (Liu et al., ICLR 2023) and
    flow matching with the optimal-transport path (Lipman et al., ICLR 2023)."""

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return 1 - t, t, -torch.ones_like(t), torch.ones_like(t)


@PROCESSES.register("diffusion")
class CosineDiffusion(Process):
    """Variance-preserving diffusion with the cosine schedule (Nichol & Dhariwal, ICML 2021).

    ``α = cos(u)``, ``σ = sin(u)``, ``u = a·t + b`` — the cosine schedule written as a
    log-SNR clipped to ``[logsnr_min, logsnr_max]`` (Hoogeboom et al., ICML 2023), so
    α never reaches 0 at t = 1 and σ never reaches 0 at t = 0.
    """

    def __init__(self, logsnr_min: float = -15.0, logsnr_max: float = 15.0) -> None:
        if not logsnr_min < logsnr_max:
            raise ConfigError(f"logsnr_min ({logsnr_min}) must be below logsnr_max ({logsnr_max}).")
        self.offset = math.atan(math.exp(-0.5 * logsnr_max))
        self.scale = math.atan(math.exp(-0.5 * logsnr_min)) - self.offset

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        u = self.scale * t + self.offset
        return torch.cos(u), torch.sin(u), -self.scale * torch.sin(u), self.scale * torch.cos(u)


class DiscreteDiffusion(Process):
    """Variance-preserving diffusion on a table of ᾱ_k = α_k² at ``T`` discrete training timesteps
    k = 0 … T−1 (DDPM, Ho et al., NeurIPS 2020; diffusers' ``alphas_cumprod``).

    Timestep k sits at t = (k + 1)/T and t = 0 is the clean data (ᾱ = 1, as DDIM's last step lands,
    Song et al., ICLR 2021); between entries ᾱ is linear in t. A uniform grid of N steps therefore
    visits the timesteps T−1, T−1−T/N, …, T/N−1 — DDIM's "trailing" spacing (Lin et al., WACV 2024)
    — exactly whenever N divides T. A network trained on the table is called at the (fractional)
    timestep T·t − 1.
    """

    def __init__(self, alphas_cumprod: Tensor) -> None:
        table = torch.as_tensor(alphas_cumprod, dtype=torch.float64).flatten()
        if table.numel() < 1 or not bool(((table >= 0) & (table <= 1)).all()):
            raise ConfigError(f"alphas_cumprod must be a non-empty table of values in [0, 1], got {table.numel()} "
                              "values outside that range.")
        self.table = torch.cat([table.new_ones(1), table])  # entry j ↔ t = j / T; entry 0 is the data
        self.num_timesteps = table.numel()

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        table = self.table.to(t.device)
        position = t.double().clamp(0, 1) * self.num_timesteps
        low = position.floor().clamp(max=self.num_timesteps - 1).long()
        slope = table[low + 1] - table[low]
        abar = table[low] + (position - low) * slope
        alpha, sigma = abar.sqrt(), (1 - abar).clamp(min=0).sqrt()
        d_abar = slope * self.num_timesteps
        d_alpha, d_sigma = d_abar / (2 * alpha.clamp(min=1e-12)), -d_abar / (2 * sigma.clamp(min=1e-12))
        return tuple(c.to(t.dtype) for c in (alpha, sigma, d_alpha, d_sigma))


def build_process(name: str, **options) -> Process:
    """The process registered as ``name`` ('flow' or 'diffusion')."""
    return PROCESSES.build(name, **options)
