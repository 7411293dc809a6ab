"""Views of real meshes: renders from cameras around them, cached by content, and the meshes they show.

A :class:`ViewSet` holds renders in [−1, 1] (the range image priors and photometric losses read),
their cameras and which mesh each shows. :func:`obtain_views` renders them once and keeps them in
the content-hash cache, keyed by the meshes' content, the cameras and the renderer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from distill.data.base import DataSplits
from distill.data.tensors import InMemoryDataset
from distill.engine.cache import array_hash, cached_tensors
from distill.scenes.cameras import OrbitCameras, pose_vector, random_cameras
from distill.scenes.meshes import UP_AXIS, load_mesh, render_mesh, shipped_mesh

#: what made the renders, in the cache key: a change of shading or ray casting must not reuse old views
RENDERER = "render_mesh: exact ray casting, headlight Lambertian 0.15 + 0.85·|n·d|"


def to_view_range(images: Tensor) -> Tensor:
    """Renders in [0, 1] in the range views are kept in: [−1, 1]."""
    return 2 * images - 1


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
        """The views as a data set whose labels are the pose vectors (what a view-conditioned model trains on)."""
        data = InMemoryDataset(self.images, self.poses)
        return DataSplits(data, data, tuple(self.images.shape[1:]), 0, name=name)


def render_views(meshes: list, count: int, size: int, seed: int, elevation: tuple[float, float],
                 radius: float, fov: float) -> ViewSet:
    """``count`` renders of each mesh from cameras drawn uniformly around it (seeded), mapped to [−1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    images, azimuth, elevations, index = [], [], [], []
    for k, mesh in enumerate(meshes):
        cameras = random_cameras(count, generator, elevation_range=elevation, radius=radius, fov_degrees=fov)
        images.append(to_view_range(render_mesh(mesh, cameras, size)))
        azimuth.append(cameras.azimuth)
        elevations.append(cameras.elevation)
        index.append(torch.full((count,), k))
    cameras = OrbitCameras(torch.cat(azimuth), torch.cat(elevations), radius, fov)
    return ViewSet(torch.cat(images), cameras, torch.cat(index))


def resolve_mesh(name: str, up: str = "y", scale: float = 1.0, centre: bool = True):
    """A shipped mesh by name (standing on its own known axis), or a mesh file by path standing on
    ``up``; either normalised with ``scale`` and ``centre`` (see :func:`~distill.scenes.meshes.normalise_mesh`)."""
    if name in UP_AXIS:
        return shipped_mesh(name, scale, centre)
    return load_mesh(Path(name), up, scale, centre)


def mesh_fingerprint(mesh) -> str:
    """A content hash of a normalised mesh's vertices and faces (a renamed or edited file is new data)."""
    return array_hash(np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64))


def obtain_views(meshes: list, count: int, size: int, seed: int, elevation: tuple[float, float],
                 radius: float, fov: float) -> tuple[ViewSet, dict]:
    """:func:`render_views` of ``meshes``, from the cache or rendered now, and the cache's info (with
    the ``identity`` the views are keyed by)."""
    identity = {"kind": "mesh-views", "renderer": RENDERER, "meshes": [mesh_fingerprint(m) for m in meshes],
                "count": count, "size": size, "elevation": list(elevation), "radius": radius, "fov": fov,
                "seed": seed}

    def render() -> tuple[dict[str, Tensor], dict]:
        started = time.perf_counter()
        views = render_views(meshes, count, size, seed, elevation, radius, fov)
        tensors = {"images": views.images, "azimuth": views.cameras.azimuth, "elevation": views.cameras.elevation,
                   "mesh_index": views.mesh_index}
        return tensors, {"seconds": time.perf_counter() - started}

    tensors, info = cached_tensors("views", identity, render)
    cameras = OrbitCameras(tensors["azimuth"], tensors["elevation"], radius, fov)
    return ViewSet(tensors["images"], cameras, tensors["mesh_index"]), {**info, "identity": identity}
