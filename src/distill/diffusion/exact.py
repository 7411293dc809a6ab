"""The closed-form ideal denoiser of a finite point set: a prior that needs no training.

For data that is exactly the points ``x_i`` (equal weights), the posterior mean under
``x_t = α x0 + σ ε`` is ``E[x0 | x_t] = Σ_i softmax_i(−‖x_t − α x_i‖² / 2σ²) · x_i``
(the optimal denoiser, e.g. Karras et al., NeurIPS 2022, Appendix B.3). It is the test
oracle of score distillation and the "exact prior" of its benchmarks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distill.diffusion.cfg import conditional_and_null, guided
from distill.diffusion.process import Process, broadcast
from distill.errors import DistillError


class ExactDenoiser(nn.Module):
    """``split(x_t, t) -> (x̂0, ε̂)`` of the ideal denoiser of ``points`` (N, ...) under ``process``.

    Answers like a :class:`~distill.diffusion.Denoiser` where score distillation reads
    one (``process``, ``split``, ``evaluations_per_call``). Subclasses weigh the points by the
    conditioning ``y`` through :meth:`log_prior` (the plain denoiser ignores it).
    """

    def __init__(self, points: Tensor, process: Process, chunk: int = 4096) -> None:
        super().__init__()
        if not isinstance(points, Tensor) or points.dim() < 2 or not len(points):
            raise DistillError(f"ExactDenoiser needs a (N, ...) tensor of points, got {getattr(points, 'shape', points)}.")
        self.register_buffer("points", points.detach().float())
        self.process, self.chunk, self.num_classes = process, chunk, 0

    def split(self, x: Tensor, t: Tensor, y: Tensor | None = None, d: Tensor | None = None) -> tuple[Tensor, Tensor]:
        alpha, sigma, _, _ = self.process.coefficients(t)
        flat, points = x.flatten(1), self.points.flatten(1)
        point_norms = points.pow(2).sum(dim=1)
        x0 = torch.empty_like(flat)
        for start in range(0, len(flat), self.chunk):  # (chunk, N) distances at a time
            rows = slice(start, start + self.chunk)
            a, s = alpha[rows, None], sigma[rows, None].clamp(min=1e-6)
            part = flat[rows]
            # ‖x − α p‖² per (row, point), with each row's own α
            squared = part.pow(2).sum(dim=1, keepdim=True) - 2 * a * (part @ points.T) + a * a * point_norms
            logits = -squared / (2 * s * s)
            if y is not None:
                logits = logits + self.log_prior(y[rows])
            x0[rows] = logits.softmax(dim=1) @ points
        x0 = x0.view_as(x)
        eps = (x - broadcast(alpha, x) * x0) / broadcast(sigma, x).clamp(min=1e-6)
        return x0, eps

    def log_prior(self, y: Tensor) -> Tensor:
        """log weights (B, N) of the points given the conditioning ``y``; the plain denoiser weighs
        every point equally and ignores ``y``."""
        return torch.zeros(len(y), len(self.points), device=self.points.device)

    def evaluations_per_call(self, y: Tensor | None = None) -> int:
        return 1


class ClassConditionalExactDenoiser(ExactDenoiser):
    """The ideal denoiser of labelled points: conditioned on class ``y`` it is the ideal denoiser of
    that class's points; ``y = NULL_CLASS`` (−1, :mod:`distill.diffusion.cfg`) is the whole set. With
    ``cfg_scale`` w ≠ 1 it answers as classifier-free guidance does (Ho & Salimans, 2022):
    ε̂_∅ + w·(ε̂_y − ε̂_∅), x̂0 alike."""

    def __init__(self, points: Tensor, labels: Tensor, process: Process, num_classes: int,
                 cfg_scale: float = 1.0) -> None:
        super().__init__(points, process)
        if labels.shape != (len(points),):
            raise DistillError(f"labels must be one per point ({len(points)},), got {tuple(labels.shape)}.")
        self.register_buffer("point_labels", labels.long())
        self.num_classes, self.cfg_scale = num_classes, float(cfg_scale)

    def log_prior(self, y: Tensor) -> Tensor:
        y = y.long().reshape(-1, 1)
        keep = (self.point_labels[None, :] == y) | (y < 0)
        return torch.where(keep, 0.0, -1e9)

    def split(self, x: Tensor, t: Tensor, y: Tensor | None = None, d: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if y is None or self.cfg_scale == 1.0:
            return super().split(x, t, y)
        (x0, eps), (x0_null, eps_null) = conditional_and_null(super().split, x, t, y)
        return guided(x0, x0_null, self.cfg_scale), guided(eps, eps_null, self.cfg_scale)

    def evaluations_per_call(self, y: Tensor | None = None) -> int:
        return 1 if y is None or self.cfg_scale == 1.0 else 2
