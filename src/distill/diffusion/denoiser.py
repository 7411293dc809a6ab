"""A network together with the process it denoises, its parameterisation and its classifier-free guidance scale."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distill.diffusion.cfg import conditional_and_null, guided
from distill.diffusion.process import PREDICTIONS, Process, broadcast
from distill.errors import ConfigError


class Denoiser(nn.Module):
    """``net(x_t, t, y, d)`` read as a prediction of (x0, ε) under ``process``.

    ``cfg_scale`` w applies classifier-free guidance (Ho & Salimans, 2022) to
    class-conditional calls: ``pred_uncond + w · (pred_cond − pred_uncond)``; w = 1 is
    the plain conditional model and costs one evaluation, any other w costs two.
    ``clip`` bounds x0 (e.g. 1.0 for images in [−1, 1]) and re-derives ε from it.
    """

    def __init__(self, net: nn.Module, process: Process, prediction: str, num_classes: int = 0,
                 cfg_scale: float = 1.0, clip: float | None = None) -> None:
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ConfigError(f"unknown prediction {prediction!r}; choose one of {sorted(PREDICTIONS)}.")
        if prediction == "eps" and float(process.coefficients(torch.ones(1))[0]) == 0.0:
            raise ConfigError(f"prediction 'eps' cannot give x0 at t = 1 of the {type(process).__name__} "
                              "(α(1) = 0, x_1 is pure noise); predict 'velocity', 'v' or 'x0' instead.")
        self.net, self.process, self.prediction = net, process, prediction
        self.num_classes, self.cfg_scale, self.clip = num_classes, float(cfg_scale), clip

    @property
    def pose_dim(self) -> int:
        """Length of the pose vector a view-conditioned net takes as ``y`` (0: none)."""
        return getattr(getattr(self.net, "embed", None), "pose_dim", 0)

    def labels(self, y: Tensor | None) -> Tensor | None:
        """The conditioning the net sees: class labels or a pose vector; None for an unconditional model."""
        return y if self.num_classes or self.pose_dim else None

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None, d: Tensor | None = None) -> Tensor:
        y = self.labels(y)
        if y is None or self.cfg_scale == 1.0 or not self.num_classes:
            return self.net(x, t, y, d)
        return guided(*conditional_and_null(self.net, x, t, y, d), self.cfg_scale)

    def split(self, x: Tensor, t: Tensor, y: Tensor | None = None, d: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(x0, ε) predicted at ``(x, t)``."""
        x0, eps = self.process.split(self.prediction, x, self(x, t, y, d), t)
        if self.clip is not None:
            alpha, sigma, _, _ = self.process.coefficients(t)
            x0 = x0.clamp(-self.clip, self.clip)
            eps = (x - broadcast(alpha, x) * x0) / broadcast(sigma, x).clamp(min=1e-8)
        return x0, eps

    def evaluations_per_call(self, y: Tensor | None) -> int:
        """Network evaluations one call costs (2 under guidance)."""
        return 1 if self.labels(y) is None or self.cfg_scale == 1.0 or not self.num_classes else 2
