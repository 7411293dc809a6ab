"""The 3-D rendering layer of the score-distillation family, in plain PyTorch.

Cameras orbit the origin (world up +z, OpenCV camera frame, pixel centres at ``+0.5``; see
:mod:`.cameras`); :class:`GaussianScene` (3D Gaussian splatting) and :class:`VoxelGrid` (ray
marching) render differentiably to ``(B, C, H, W)`` images in [0, 1] through the shared
front-to-back compositing of :mod:`.composite`; :mod:`.meshes` loads, samples and ray-casts
reference meshes; :mod:`.outputs` writes scenes to disk.
"""

from distill.tasks.score.render.cameras import OrbitCameras, orbit, pose_vector, random_cameras
from distill.tasks.score.render.composite import composite, compositing_weights
from distill.tasks.score.render.gaussians import GaussianScene
from distill.tasks.score.render.meshes import (
    MESHES_DIR,
    UP_AXIS,
    box_mesh,
    chamfer_distance,
    ellipsoid_mesh,
    load_mesh,
    normalise_mesh,
    render_mesh,
    sample_surface,
    shipped_mesh,
)
from distill.tasks.score.render.outputs import write_ply, write_voxels
from distill.tasks.score.render.voxels import VoxelGrid

__all__ = [
    "MESHES_DIR", "UP_AXIS", "GaussianScene", "OrbitCameras", "VoxelGrid", "box_mesh", "chamfer_distance",
    "composite", "compositing_weights", "ellipsoid_mesh", "load_mesh", "normalise_mesh", "orbit",
    "pose_vector", "random_cameras", "render_mesh", "sample_surface", "shipped_mesh", "write_ply",
    "write_voxels",
]
