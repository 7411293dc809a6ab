"""Views of real meshes: the only thing a view-conditioned prior ever sees, and its exact prior.

A prior for 3-D score distillation is trained on renders of meshes from cameras on an orbit; each
render comes with its camera's pose vector (sin az, cos az, sin el, cos el), the conditioning
``y`` the prior takes. The exact prior is the closed-form ideal denoiser of that render set with
every render weighted by how close its camera is to the query's: no training, the test oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from distill.data.base import DataSplits
from distill.data.tensors import InMemoryDataset
from distill.diffusion.exact import ExactDenoiser
from distill.diffusion.process import Process
from distill.errors import ConfigError
from distill.tasks.score.render import OrbitCameras, pose_vector, random_cameras, render_mesh

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


@dataclass
class ViewSet:
    """Renders (N, C, H, W) in [−1, 1] of one or more meshes, their cameras and which mesh each shows."""

    images: Tensor
    cameras: OrbitCameras
    mesh_index: Tensor

    @property
    def poses(self) -> Tensor:
        return pose_vector(self.cameras)

    def subset(self, keep: Tensor) -> ViewSet:
        """The views selected by ``keep`` (a mask or indices)."""
        return ViewSet(self.images[keep], self.cameras[keep], self.mesh_index[keep])

    def splits(self, name: str = "views") -> DataSplits:
        """The views as a data set whose labels are the pose vectors (what a view prior trains on)."""
        data = InMemoryDataset(self.images, self.poses)
        return DataSplits(data, data, tuple(self.images.shape[1:]), 0, name=name)


def render_views(meshes: list, count: int, size: int, seed: int, elevation: tuple[float, float],
                 radius: float, fov: float) -> ViewSet:
    """``count`` renders of each mesh from cameras drawn uniformly around it (seeded), mapped to [−1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    images, azimuth, elevations, index = [], [], [], []
    for k, mesh in enumerate(meshes):
        cameras = random_cameras(count, generator, elevation_range=elevation, radius=radius, fov_degrees=fov)
        images.append(2 * render_mesh(mesh, cameras, size) - 1)
        azimuth.append(cameras.azimuth)
        elevations.append(cameras.elevation)
        index.append(torch.full((count,), k))
    cameras = OrbitCameras(torch.cat(azimuth), torch.cat(elevations), radius, fov)
    return ViewSet(torch.cat(images), cameras, torch.cat(index))
