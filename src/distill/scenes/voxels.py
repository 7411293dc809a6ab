"""A differentiable voxel radiance field rendered by ray marching (NeRF-style volume rendering).

Density and colour logits live on a ``D^3`` lattice spanning ``[-bound, bound]^3``, looked up
trilinearly (``grid_sample``, ``align_corners=True``: lattice point ``i`` sits at
``-bound + 2 bound i / (D - 1)``) and activated after interpolation (softplus density, sigmoid
colour; the "post-activation" of DVGO, Sun et al. 2022), and ray-marched as every
:class:`~distill.scenes.marching.VolumeField` is.
Tensors are indexed ``[x, y, z]``: ``density_logits[i, j, k]`` is the value at ``(x_i, y_j, z_k)``.
Registered in ``REPRESENTATIONS`` as ``voxels``; saved as a compressed ``.npz``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.errors import ConfigError, DistillError, check_count
from distill.scenes.io import checked_path
from distill.scenes.marching import VolumeField
from distill.scenes.representation import REPRESENTATIONS, check_channels


@REPRESENTATIONS.register("voxels")
class VoxelGrid(VolumeField):
    """A ray-marched voxel radiance field: ``resolution^3`` density logits ``(D, D, D)`` and colour logits
    ``(C, D, D, D)`` over ``[-bound, bound]^3``.

    ``init_density`` is the initial density logit (softplus(-2) ≈ 0.13 per unit length: nearly
    empty); colours start grey. With ``features=True`` the ``C`` channels are a feature field's raw
    values (no sigmoid; they start at 0). ``samples``: ray samples per pixel when rendering.
    """

    suffix = ".npz"

    def __init__(self, resolution: int = 32, channels: int = 3, bound: float = 1.0,
                 init_density: float = -2.0, features: bool = False, samples: int = 64) -> None:
        super().__init__()
        if not isinstance(resolution, int) or resolution < 2:
            raise ConfigError(f"resolution must be an int >= 2, got {resolution!r}.")
        check_channels(channels, features)
        if not bound > 0:
            raise ConfigError(f"bound must be > 0, got {bound!r}.")
        self.samples = check_count("samples", samples)
        self.bound = float(bound)
        self._features = bool(features)
        self.density_logits = nn.Parameter(torch.full((resolution,) * 3, float(init_density)))
        self.colour_logits = nn.Parameter(torch.zeros(channels, *(resolution,) * 3))

    @property
    def resolution(self) -> int:
        return self.density_logits.shape[0]

    @property
    def channels(self) -> int:
        return self.colour_logits.shape[0]

    @property
    def features(self) -> bool:
        return self._features

    def _activate(self, values: Tensor) -> Tensor:
        return values if self.features else torch.sigmoid(values)

    def densities(self) -> Tensor:
        """Activated densities ``softplus(logits)`` at the lattice points, ``(D, D, D)``."""
        return F.softplus(self.density_logits)

    def colours(self) -> Tensor:
        """Activated colours at the lattice points, ``(C, D, D, D)`` in [0, 1] (a feature field's raw values)."""
        return self._activate(self.colour_logits)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"density": [self.density_logits], "features" if self.features else "colours": [self.colour_logits]}

    def save(self, path) -> Path:
        """Write the grid as a compressed ``.npz`` (see :func:`write_voxels`)."""
        return write_voxels(self, path)

    @classmethod
    def load(cls, path) -> VoxelGrid:
        """The grid :func:`write_voxels` wrote to ``path`` (see :func:`read_voxels`)."""
        return read_voxels(path)

    def lattice_points(self) -> Tensor:
        """World positions of the lattice points, ``(D, D, D, 3)``, indexed ``[x, y, z]`` like the grids."""
        axis = torch.linspace(-self.bound, self.bound, self.resolution, dtype=self.density_logits.dtype,
                              device=self.density_logits.device)
        return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)

    def occupied_points(self, min_opacity: float = 0.1) -> Tensor:
        """Lattice points whose cell is at least ``min_opacity`` opaque across one cell width
        (``1 - exp(-sigma · 2 bound / (D - 1)) >= min_opacity``), ``(M, 3)``; every lattice point
        when none is, so the result is never empty."""
        if not 0.0 <= min_opacity < 1.0:
            raise ConfigError(f"min_opacity must lie in [0, 1), got {min_opacity!r}.")
        cell = 2 * self.bound / (self.resolution - 1)
        opacity = -torch.expm1(-self.densities() * cell)
        points = self.lattice_points()
        keep = opacity >= min_opacity
        return points[keep] if keep.any() else points.reshape(-1, 3)

    def point_values(self, points: Tensor, directions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Density logits ``(...)`` and activated colours ``(..., C)`` at world ``points`` ``(..., 3)``,
        interpolated trilinearly before the activation."""
        # grid_sample reads (x, y, z) grid coordinates as (W, H, D) of its input: our [x, y, z]
        # layout is its [D, H, W], so the coordinates go in reversed.
        grid = (points.flip(-1) / self.bound).reshape(1, 1, 1, -1, 3)
        values = torch.cat([self.density_logits[None], self.colour_logits])[None]   # (1, 1 + C, D, D, D)
        sampled = F.grid_sample(values, grid.to(values), mode="bilinear", padding_mode="border",
                                align_corners=True)[0, :, 0, 0]                      # (1 + C, P)
        sampled = sampled.transpose(0, 1).reshape(*points.shape[:-1], 1 + self.channels)
        return sampled[..., 0], self._activate(sampled[..., 1:])


def write_voxels(grid: VoxelGrid, path) -> Path:
    """Write ``grid`` to a compressed ``.npz`` and return the path.

    Arrays: ``density`` ``(D, D, D)`` (softplus-activated, per unit length), ``colour``
    ``(D, D, D, C)`` in [0, 1] (``features`` for a feature field), both indexed ``[x, y, z]`` with
    lattice point ``i`` at ``-bound + 2 bound i / (D - 1)``; ``bounds`` ``(2, 3)``: the cube's min and
    max corners; ``density_logits`` and ``colour_logits``, the parameters as they are, and ``samples``, the
    ray samples per pixel it renders with (so :func:`read_voxels` restores the grid exactly).
    """
    if not isinstance(grid, VoxelGrid):
        raise ConfigError(f"write_voxels needs a VoxelGrid, got {type(grid).__name__}.")
    path = checked_path(path, ".npz", "write_voxels")
    with torch.no_grad():
        density = grid.densities().float().cpu().numpy()
        colour = grid.colours().permute(1, 2, 3, 0).float().cpu().numpy()
        logits = {name: getattr(grid, name).detach().float().cpu().numpy()
                  for name in ("density_logits", "colour_logits")}
    bounds = np.array([[-grid.bound] * 3, [grid.bound] * 3], dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, density=density, bounds=bounds, **{"features" if grid.features else "colour": colour},
                        samples=np.array(grid.samples), **logits)
    return path


def read_voxels(path) -> VoxelGrid:
    """The ``VoxelGrid`` :func:`write_voxels` wrote to ``path``."""
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"scene file {str(path)!r} does not exist.")
    with np.load(path) as data:
        missing = [key for key in ("bounds", "density_logits", "colour_logits") if key not in data.files]
        if missing:
            raise DistillError(f"{str(path)!r} is not a VoxelGrid file written by distill: it lacks the arrays "
                               f"{', '.join(missing)}.")
        density, colour = torch.from_numpy(data["density_logits"]), torch.from_numpy(data["colour_logits"])
        grid = VoxelGrid(density.shape[0], colour.shape[0], float(data["bounds"][1, 0]),
                         features="features" in data.files,
                         samples=int(data["samples"]) if "samples" in data.files else VolumeField.samples)
    with torch.no_grad():
        grid.density_logits.copy_(density)
        grid.colour_logits.copy_(colour)
    return grid
