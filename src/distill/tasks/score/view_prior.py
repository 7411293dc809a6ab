"""The view prior: what a view-conditioned prior conditions on, and its exact form.

A prior for 3-D score distillation is trained on renders of meshes from cameras on an orbit
(:class:`distill.scenes.ViewSet`); each render comes with its camera's pose vector (sin az, cos az,
sin el, cos el), the conditioning ``y`` the prior takes. The exact prior is the closed-form ideal
denoiser of that render set with every render weighted by how close its camera is to the query's:
no training, the test oracle.
"""

from __future__ import annotations

import torch
from torch import Tensor

from distill.diffusion.exact import ExactDenoiser
from distill.diffusion.process import Process
from distill.errors import ConfigError

POSE_DIM = 4


def view_directions(poses: Tensor) -> Tensor:
    """Unit camera directions (B, 3) from pose vectors (B, 4) = (sin az, cos az, sin el, cos el)."""
    sin_az, cos_az, sin_el, cos_el = poses.unbind(dim=1)
    return torch.stack([cos_el * cos_az, cos_el * sin_az, sin_el], dim=1)


class ViewConditionedExactDenoiser(ExactDenoiser):
    """The ideal denoiser of renders ``images`` (N, C, H, W) taken from cameras ``poses`` (N, 4),
    each render weighted by a Gaussian kernel of the angle between its camera and the query's
    (``kappa_degrees`` wide): E[x0 | x_t, c] = Σ_i w_i(c) N(x_t; α x_i, σ²) x_i / Σ_i w_i(c) N(…).
    The kernel is cut at 2κ (the nearest camera always kept): at low noise the image term of a
    soft kernel outweighs any camera distance, and the prior would answer every camera with the
    render nearest in pixels, whichever side of the object it shows.
    The score distillation analogue of a view-conditioned diffusion model (Liu et al. 2023,
    Zero-1-to-3) with nothing learned, so any error of a guidance is the guidance's own."""

    def __init__(self, images: Tensor, poses: Tensor, process: Process, kappa_degrees: float = 15.0) -> None:
        super().__init__(images, process)
        if poses.shape != (len(images), POSE_DIM):
            raise ConfigError(f"poses must be ({len(images)}, {POSE_DIM}) pose vectors, got {tuple(poses.shape)}.")
        if not kappa_degrees > 0:
            raise ConfigError(f"kappa_degrees must be > 0, got {kappa_degrees}.")
        self.register_buffer("directions", view_directions(poses.float()))
        self.kappa = float(torch.deg2rad(torch.tensor(kappa_degrees)))

    def log_prior(self, y: Tensor) -> Tensor:
        if y.dim() != 2 or y.shape[1] != POSE_DIM:
            raise ConfigError(f"a view-conditioned prior takes pose vectors (B, {POSE_DIM}) as y, got {tuple(y.shape)}.")
        cosine = (view_directions(y.float()) @ self.directions.T).clamp(-1.0, 1.0)
        angle = torch.arccos(cosine)
        window = angle.amin(dim=1, keepdim=True).clamp(min=2 * self.kappa)
        return torch.where(angle <= window, -angle.pow(2) / (2 * self.kappa**2), -1e9)
