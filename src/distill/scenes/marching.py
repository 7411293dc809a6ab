"""Ray marching through a volume: the samples along every pixel's ray and the fields rendered from them.

A :class:`VolumeField` is any representation that answers :meth:`~VolumeField.point_values` — the
pre-activation density (``softplus`` of it is the density per unit length) and the channel values at
world points — inside the cube ``[-bound, bound]^3``. It is rendered the way NeRF renders (Mildenhall
et al. 2020; Max 1995): ``K`` samples per ray between its entry into and exit from the cube, ``alpha_k =
1 - exp(-sigma_k delta)`` and front-to-back compositing. The voxel grid and the coordinate-MLP field are
both volume fields; :func:`ray_samples` is also how a teacher's samples are handed to a student
(Progressive Volume Distillation matches both at the same points, Fang et al. 2023).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.errors import ConfigError, check_count
from distill.scenes.cameras import OrbitCameras, as_cameras, image_size
from distill.scenes.composite import background_tensor, compositing_weights
from distill.scenes.representation import Representation


@dataclass
class RaySamples:
    """``K`` samples along each of the ``(B, H, W)`` rays: world ``points`` ``(B, H, W, K, 3)``, unit
    ``directions`` ``(B, H, W, 3)``, ray distances ``t`` ``(B, H, W, K)`` and the spacing ``delta``
    ``(B, H, W)`` (0 for a ray that misses the cube)."""

    points: Tensor
    directions: Tensor
    t: Tensor
    delta: Tensor

    def rays(self, index: Tensor) -> RaySamples:
        """The rays numbered ``index`` (``(R,)``, counting every ray in order) as ``R`` rays: points ``(R, K, 3)``,
        directions ``(R, 3)``, distances ``(R, K)``, spacing ``(R,)``."""
        samples = self.points.shape[-2]
        return RaySamples(self.points.reshape(-1, samples, 3)[index], self.directions.reshape(-1, 3)[index],
                          self.t.reshape(-1, samples)[index], self.delta.reshape(-1)[index])


def ray_box(origins: Tensor, directions: Tensor, bound: float) -> tuple[Tensor, Tensor]:
    """Entry and exit distances of rays into the cube ``[-bound, bound]^3`` (slab method; Kay & Kajiya
    1986), clipped to start at 0; both are 0 for a ray that misses."""
    safe = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    t0, t1 = (-bound - origins) / safe, (bound - origins) / safe
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(-1)
    hit = far > near
    zero = torch.zeros_like(near)
    return torch.where(hit, near, zero), torch.where(hit, far, zero)


def ray_samples(cameras: OrbitCameras, size, bound: float, samples: int, jitter: bool = False,
                generator: torch.Generator | None = None) -> RaySamples:
    """``samples`` midpoints of equal segments of every pixel's ray inside ``[-bound, bound]^3``, each moved
    uniformly within its segment when ``jitter`` (stratified sampling; drawn from ``generator``, or from
    torch's global generator when it is None)."""
    check_count("samples", samples)
    if not bound > 0:
        raise ConfigError(f"bound must be > 0, got {bound!r}.")
    height, width = image_size(size)
    origins, directions = cameras.rays((height, width))
    origins = origins[:, None, None, :].expand_as(directions)
    near, far = ray_box(origins, directions, bound)                                  # (B, H, W)
    offsets = torch.arange(samples, dtype=near.dtype, device=near.device) + 0.5
    if jitter:
        offsets = offsets + torch.rand(*near.shape, samples, generator=generator).to(near) - 0.5
    delta = (far - near) / samples
    t = near[..., None] + offsets * delta[..., None]                                 # (B, H, W, K)
    points = origins[..., None, :] + t[..., None] * directions[..., None, :]
    return RaySamples(points, directions, t, delta)


def sample_alphas(density_logits: Tensor, delta: Tensor) -> Tensor:
    """Per-sample opacities ``1 - exp(-softplus(logit) delta)`` ``(..., K)`` for segments of length ``delta`` ``(...)``."""
    return -torch.expm1(-F.softplus(density_logits) * delta[..., None])


def render_rays(scene: Representation, rays: RaySamples, background=0.0) -> Tensor:
    """The colours ``(R, C)`` of ``R`` rays (``rays`` as :meth:`RaySamples.rays` gives them) composited from
    ``scene``'s values at their samples: how a volume renders a pixel, for any subset of pixels (NeRF
    trains on random rays; PVD renders its student at the teacher's samples)."""
    logits, values = scene.point_values(rays.points, rays.directions[:, None, :])
    weights, final = compositing_weights(sample_alphas(logits, rays.delta))
    background = background_tensor(background, scene.channels, values, bounded=not scene.features)
    return (weights[..., None] * values).sum(-2) + final[..., None] * background


class VolumeField(Representation):
    """Base of the representations rendered by ray marching inside ``[-bound, bound]^3`` with ``samples``
    samples per ray unless a render asks for another count: a subclass says what it holds at a point
    (:meth:`point_values`), this class renders it."""

    bound: float
    samples: int = 64

    @abstractmethod
    def point_values(self, points: Tensor, directions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Pre-activation density ``(...)`` and channel values ``(..., C)`` (colours in [0, 1], or a feature
        field's raw values) at world ``points`` ``(..., 3)``; ``directions`` are ignored (no view dependence)."""

    def query(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Density per unit length ``(...)`` (softplus-activated) and channel values ``(..., C)`` at ``points``."""
        if points.shape[-1] != 3:
            raise ConfigError(f"points must have shape (..., 3), got {tuple(points.shape)}.")
        logits, values = self.point_values(points)
        return F.softplus(logits), values

    def ray_samples(self, cameras: OrbitCameras, size, samples: int | None = None, jitter: bool = False,
                    generator: torch.Generator | None = None) -> RaySamples:
        """The samples this field is rendered from (see :func:`ray_samples`; ``samples`` defaults to its own)."""
        like = self._reference()
        cameras = as_cameras(cameras).to(device=like.device, dtype=like.dtype)
        return ray_samples(cameras, size, self.bound, samples or self.samples, jitter, generator)

    def _reference(self) -> Tensor:
        return next(self.parameters())

    def render(self, cameras: OrbitCameras, size, samples: int | None = None, background=0.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Images ``(B, C, H, W)``; ``samples`` midpoints per ray (its own count by default; stratified-jittered
        when a ``generator`` is given); rays missing the cube show the background."""
        like = self._reference()
        cameras = as_cameras(cameras).to(device=like.device, dtype=like.dtype)
        background = background_tensor(background, self.channels, like, bounded=not self.features)
        weights, final, values, _ = self._march(cameras, size, samples, generator)
        image = (weights[..., None] * values).sum(-2) + final[..., None] * background
        return image.permute(0, 3, 1, 2)

    def render_depth(self, cameras: OrbitCameras, size, samples: int | None = None) -> tuple[Tensor, Tensor]:
        """Expected camera depth ``(B, H, W)`` (normalised by the opacity where it is > 0) and
        accumulated opacity ``(B, H, W)``."""
        like = self._reference()
        cameras = as_cameras(cameras).to(device=like.device, dtype=like.dtype)
        weights, final, _, found = self._march(cameras, size, samples, None)
        opacity = 1.0 - final
        forward = cameras.rotation()[:, 2]                                            # (B, 3)
        cosine = (found.directions * forward[:, None, None, :]).sum(-1)              # ray distance → depth
        return (weights * found.t).sum(-1) * cosine / opacity.clamp_min(1e-6), opacity

    def _march(self, cameras: OrbitCameras, size, samples: int | None, generator: torch.Generator | None):
        """Compositing weights (B, H, W, K), final transmittance (B, H, W), values (B, H, W, K, C) and the
        samples along every pixel's ray."""
        found = self.ray_samples(cameras, size, samples, generator is not None, generator)
        logits, values = self.point_values(found.points)
        weights, final = compositing_weights(sample_alphas(logits, found.delta))
        return weights, final, values, found
