"""3-D scenes, shared by every family that renders: cameras, differentiable representations behind
one protocol, meshes and their views, 3-D metrics and scene files, in plain PyTorch.

Cameras orbit the origin (world up +z, OpenCV camera frame, pixel centres at ``+0.5``; see
:mod:`.cameras`). Every representation (:mod:`.representation`: ``REPRESENTATIONS`` holds
``gaussians``, 3D Gaussian splatting; ``voxels``, a ray-marched grid; ``field``, a ray-marched
coordinate MLP — the two volumes share :mod:`.marching`) renders ``(B, C, H, W)`` images of any number
of channels, depth and opacity through the front-to-back compositing of :mod:`.composite`, answers
its density and colour at points along rays, names its parameter groups and saves / loads itself
(:mod:`.io`, :mod:`.files`). :mod:`.meshes` loads, samples and ray-casts reference meshes;
:mod:`.views` renders and caches views of them (:mod:`.recipe`: the recipe section that names them);
:mod:`.metrics` scores a representation against them (Chamfer, PSNR / SSIM); :mod:`.reconstruction`
fits one to views directly.
"""

from distill.scenes.cameras import OrbitCameras, orbit, pose_vector, random_cameras
from distill.scenes.composite import composite, compositing_weights
from distill.scenes.field import NeuralField, read_field, write_field
from distill.scenes.files import read_representation
from distill.scenes.gaussians import GaussianScene, read_ply, write_ply
from distill.scenes.marching import RaySamples, VolumeField, ray_samples
from distill.scenes.meshes import (
    MESHES_DIR,
    UP_AXIS,
    box_mesh,
    ellipsoid_mesh,
    load_mesh,
    normalise_mesh,
    render_mesh,
    sample_surface,
    shipped_mesh,
)
from distill.scenes.metrics import chamfer_distance, image_metrics, surface_points
from distill.scenes.recipe import ViewsSpec
from distill.scenes.reconstruction import ReconstructionObjective
from distill.scenes.representation import REPRESENTATIONS, Representation
from distill.scenes.views import ViewSet, mesh_fingerprint, obtain_views, render_views, resolve_mesh, to_view_range
from distill.scenes.voxels import VoxelGrid, read_voxels, write_voxels

__all__ = [
    "MESHES_DIR", "REPRESENTATIONS", "UP_AXIS", "GaussianScene", "NeuralField", "OrbitCameras", "RaySamples",
    "ReconstructionObjective", "Representation", "ViewSet", "ViewsSpec", "VolumeField", "VoxelGrid", "box_mesh",
    "chamfer_distance", "composite", "compositing_weights", "ellipsoid_mesh", "image_metrics", "load_mesh",
    "mesh_fingerprint", "normalise_mesh", "obtain_views", "orbit", "pose_vector", "random_cameras", "ray_samples",
    "read_field", "read_ply", "read_representation", "read_voxels", "render_mesh", "render_views", "resolve_mesh",
    "sample_surface", "shipped_mesh", "surface_points", "to_view_range", "write_field", "write_ply", "write_voxels",
]
