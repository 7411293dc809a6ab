"""The one protocol every 3-D representation implements, and the registry that names them.

A representation is an ``nn.Module`` whose parameters are the scene. Whatever it is made of
(Gaussians, a voxel grid, a field), it answers the same calls, so objectives, metrics and
families never branch on its type (threestudio registers geometries and renderers the same way,
Guo et al. 2023):

* :meth:`Representation.render` — ``(B, C, H, W)`` images of any number of channels ``C`` for a
  batch of ``B`` cameras: grey or RGB colour, or the features of a feature field, one call;
* :meth:`Representation.render_depth` — expected camera depth and accumulated opacity (alpha),
  ``(B, H, W)`` each: the geometry;
* :meth:`Representation.parameter_groups` — named parameter groups for the engine's per-group
  optimiser settings (3DGS trains positions, scales, rotations, opacities and colours at
  different learning rates);
* :meth:`Representation.save` / :meth:`Representation.load` — its file, in a format viewers open;
* :meth:`Representation.ray_samples` / :meth:`Representation.point_values` — where along each pixel's
  ray it is read, and its pre-activation density and channel values at any points: what converting one
  representation into another matches point by point (Progressive Volume Distillation, Fang et al. 2023).

``REPRESENTATIONS`` builds a fresh one by name (``gaussians``, ``voxels``, ``field``) with its options.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from torch import Tensor, nn

from distill.errors import ConfigError, check_count
from distill.registry import Registry

REPRESENTATIONS: Registry = Registry("3-D representation")


class Representation(nn.Module, ABC):
    """Base of the differentiable 3-D representations; ``suffix`` is the file type :meth:`save` writes.

    ``features=False`` (colour): 1 (grey) or 3 (RGB) channels squashed into [0, 1];
    ``features=True`` (a feature field): any number of channels, raw values composited the same way
    (distilled feature fields, Kobayashi et al. 2022; Feature 3DGS, Zhou et al. 2024).
    """

    suffix: str

    @property
    @abstractmethod
    def channels(self) -> int:
        """How many channels :meth:`render` returns."""

    @property
    @abstractmethod
    def features(self) -> bool:
        """Whether the channels are raw features (True) or colours in [0, 1] (False)."""

    @abstractmethod
    def render(self, cameras, size, background=0.0) -> Tensor:
        """Images ``(B, C, H, W)`` seen by ``cameras`` (``B`` of them) at ``size``; ``background`` is a
        number or ``C`` numbers shown where nothing is in front."""

    @abstractmethod
    def render_depth(self, cameras, size) -> tuple[Tensor, Tensor]:
        """Expected camera depth ``(B, H, W)`` (normalised by the opacity) and accumulated opacity ``(B, H, W)``."""

    @abstractmethod
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Every parameter once, in named groups (the engine gives each its own optimiser settings)."""

    @abstractmethod
    def save(self, path) -> Path:
        """Write the representation to ``path`` (ending in :attr:`suffix`) and return the path."""

    @classmethod
    @abstractmethod
    def load(cls, path) -> Representation:
        """The representation :meth:`save` wrote to ``path``."""

    def ray_samples(self, cameras, size, samples: int = 64, jitter: bool = False, generator=None):
        """``samples`` points along every pixel's ray through the region it occupies (a
        :class:`~distill.scenes.marching.RaySamples`), stratified-jittered when ``jitter``."""
        raise ConfigError(f"{type(self).__name__} cannot be read along rays: implement ray_samples and "
                          "point_values to convert it point by point.")

    def point_values(self, points: Tensor, directions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Pre-activation density ``(...)`` (``softplus`` of it is the density per unit length) and channel
        values ``(..., C)`` at world ``points`` ``(..., 3)`` seen along ``directions``."""
        raise ConfigError(f"{type(self).__name__} cannot be read at points: implement point_values and "
                          "ray_samples to convert it point by point.")

    def parameter_count(self) -> int:
        """How many numbers the representation is made of."""
        return sum(p.numel() for p in self.parameters())


def check_channels(channels, features: bool) -> int:
    """``channels`` validated: 1 or 3 for colour, any positive int for a feature field."""
    if features:
        check_count("a feature field's channels", channels)
    elif channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}; for any other width "
                          "make a feature field (features=True).")
    return int(channels)

