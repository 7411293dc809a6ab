"""Part labels from a mesh's own geometry, and the label maps its views show: the ground truth a
segmentation network is trained on and a lifted feature field is scored against.

:func:`face_parts` splits the faces into ``k`` parts by k-means (Lloyd 1982) of their centroids,
weighted by area and started by k-means++ (Arthur & Vassilvitskii 2007), seeded; :func:`part_maps`
ray-casts views exactly as :func:`~distill.scenes.meshes.render_mesh` does and reads the part of the
face each pixel sees: 0 is the background, parts are 1..k.
"""

from __future__ import annotations

import numpy as np
import torch
import trimesh
from torch import Tensor

from distill.errors import ConfigError, check_count
from distill.scenes.cameras import OrbitCameras
from distill.scenes.meshes import render_mesh_faces


def face_parts(mesh: trimesh.Trimesh, k: int, seed: int = 0, iterations: int = 50) -> Tensor:
    """The part ``(F,)`` in 1..k of each face: area-weighted k-means of the face centroids (k-means++ start
    from ``seed``, then ``iterations`` Lloyd steps at most), parts numbered by their centre's height (+z), so
    1 is the lowest part."""
    check_count("parts", k)
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) < k:
        raise ConfigError(f"part labels need a triangle mesh with at least {k} faces (one per part); got "
                          f"{len(getattr(mesh, 'faces', []))} faces.")
    centroids = torch.tensor(np.array(mesh.triangles_center), dtype=torch.float64)
    area = torch.tensor(np.array(mesh.area_faces), dtype=torch.float64).clamp_min(1e-12)
    generator = torch.Generator().manual_seed(seed)
    centres = centroids[torch.multinomial(area, 1, generator=generator)]
    for _ in range(k - 1):  # k-means++: the next centre drawn by area × squared distance to the nearest one
        distance = torch.cdist(centroids, centres).amin(-1).pow(2)
        centres = torch.cat([centres, centroids[torch.multinomial(area * distance + 1e-30, 1, generator=generator)]])
    labels = torch.cdist(centroids, centres).argmin(-1)
    for _ in range(iterations):
        weights = torch.zeros(len(centroids), k, dtype=torch.float64)
        weights[torch.arange(len(centroids)), labels] = area
        mass = weights.sum(0)
        centres = torch.where(mass[:, None] > 0, weights.T @ centroids / mass.clamp_min(1e-30)[:, None], centres)
        updated = torch.cdist(centroids, centres).argmin(-1)
        if torch.equal(updated, labels):
            break
        labels = updated
    rank = torch.empty(k, dtype=torch.long)
    rank[torch.argsort(centres[:, 2])] = torch.arange(k)
    return rank[labels] + 1


def part_maps(mesh: trimesh.Trimesh, parts: Tensor, cameras: OrbitCameras, size) -> Tensor:
    """The part each pixel of each view sees, ``(B, H, W)`` long: ``parts[face]`` where its ray hits the mesh,
    0 where it misses."""
    if not isinstance(parts, Tensor) or parts.shape != (len(mesh.faces),):
        raise ConfigError(f"parts must hold one label per face, shape ({len(mesh.faces)},); got "
                          f"{tuple(parts.shape) if isinstance(parts, Tensor) else type(parts).__name__}.")
    faces = render_mesh_faces(mesh, cameras, size)
    return torch.where(faces < 0, 0, parts.long()[faces.clamp_min(0)])
