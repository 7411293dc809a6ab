"""Writing optimised scenes to disk: Gaussians as a PLY point cloud, voxel grids as ``.npz``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from distill.errors import ConfigError
from distill.tasks.score.render.gaussians import GaussianScene
from distill.tasks.score.render.voxels import VoxelGrid

PLY_PROPERTIES = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
                  ("opacity", "<f4"), ("scale_0", "<f4"), ("scale_1", "<f4"), ("scale_2", "<f4"),
                  ("rot_0", "<f4"), ("rot_1", "<f4"), ("rot_2", "<f4"), ("rot_3", "<f4")]
_PLY_TYPES = {"<f4": "float", "u1": "uchar"}


def write_ply(scene: GaussianScene, path) -> Path:
    """Write the Gaussians' centres as a binary little-endian PLY point cloud and return the path.

    Per vertex: ``x, y, z``; colour as uint8 ``red, green, blue`` (grey scenes repeat their one
    channel); ``opacity`` in [0, 1]; ``scale_0..2`` the per-axis standard deviations in world
    units (not their logs); ``rot_0..3`` the unit quaternion ``(w, x, y, z)``. ``trimesh.load``
    reads it back as a ``PointCloud`` (the extra properties are in ``metadata["_ply_raw"]``).
    """
    if not isinstance(scene, GaussianScene):
        raise ConfigError(f"write_ply needs a GaussianScene, got {type(scene).__name__}.")
    path = Path(path)
    if path.suffix.lower() != ".ply":
        raise ConfigError(f"write_ply writes .ply files; got the path {str(path)!r}. Name it e.g. scene.ply.")
    with torch.no_grad():
        colours = scene.colours.expand(-1, 3) if scene.channels == 1 else scene.colours
        rotations = torch.nn.functional.normalize(scene.rotations, dim=-1)
        columns = [scene.positions, (colours * 255).round(), scene.opacities[:, None], scene.scales, rotations]
        values = torch.cat([c.detach().double().cpu() for c in columns], dim=1).numpy()
    table = np.empty(len(scene), dtype=PLY_PROPERTIES)
    for i, (name, _) in enumerate(PLY_PROPERTIES):
        table[name] = values[:, i]
    header = ["ply", "format binary_little_endian 1.0", "comment distill GaussianScene",
              f"element vertex {len(scene)}"]
    header += [f"property {_PLY_TYPES[kind]} {name}" for name, kind in PLY_PROPERTIES] + ["end_header"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write(("\n".join(header) + "\n").encode("ascii"))
        handle.write(table.tobytes())
    return path


def write_voxels(grid: VoxelGrid, path) -> Path:
    """Write ``grid`` to a compressed ``.npz`` and return the path.

    Arrays: ``density`` ``(D, D, D)`` (softplus-activated, per unit length), ``colour``
    ``(D, D, D, C)`` in [0, 1], both indexed ``[x, y, z]`` with lattice point ``i`` at
    ``-bound + 2 bound i / (D - 1)``; ``bounds`` ``(2, 3)``: the cube's min and max corners.
    """
    if not isinstance(grid, VoxelGrid):
        raise ConfigError(f"write_voxels needs a VoxelGrid, got {type(grid).__name__}.")
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise ConfigError(f"write_voxels writes .npz files; got the path {str(path)!r}. Name it e.g. grid.npz.")
    with torch.no_grad():
        density = grid.densities().float().cpu().numpy()
        colour = grid.colours().permute(1, 2, 3, 0).float().cpu().numpy()
    bounds = np.array([[-grid.bound] * 3, [grid.bound] * 3], dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, density=density, colour=colour, bounds=bounds)
    return path
