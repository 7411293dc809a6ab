"""Meshes: loading and normalising, surface samples and exact ray-cast renders.

Meshes are ``trimesh.Trimesh`` objects. :func:`load_mesh` centres a mesh on its bounding-box
centre (unless told to keep the file's origin), rotates its named ``up`` axis onto the world up
+z (the cameras' convention) and scales it so its farthest vertex is at distance ``scale``
(1: it fits the unit sphere exactly).
:func:`render_mesh` casts one ray per pixel centre against every triangle (Möller & Trumbore
1997, "Fast, Minimum Storage Ray/Triangle Intersection"), keeps the nearest hit and shades it
grey with a headlight: ``0.15 + 0.85 |n · d|``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import trimesh
from torch import Tensor

from distill.errors import ConfigError, DistillError, check_count, unknown_name_message
from distill.scenes.cameras import OrbitCameras, as_cameras, image_size
from distill.scenes.composite import background_tensor

MESHES_DIR = Path(__file__).resolve().parents[1] / "data" / "meshes"
# The axis each shipped mesh stands on in its file (found by rendering orbits of each and looking).
UP_AXIS = {"cow": "y", "elephant": "y", "pig": "-y", "triceratops": "y"}
AMBIENT = 0.15

# Rotations taking the named axis onto +z (proper rotations, so handedness is kept).
_UP_ROTATIONS = {
    "z": np.eye(3),
    "-z": np.diag([1.0, -1.0, -1.0]),
    "y": np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]),
    "-y": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),
    "x": np.array([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]]),
    "-x": np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]]),
}


def normalise_mesh(mesh: trimesh.Trimesh, up: str = "z", scale: float = 1.0, centre: bool = True) -> trimesh.Trimesh:
    """A copy of ``mesh`` centred on its bounding-box centre (``centre=False``: its own origin stays
    the centre), with ``up`` rotated to +z and scaled so the largest vertex norm is ``scale``."""
    if up not in _UP_ROTATIONS:
        raise ConfigError(unknown_name_message("up axis", str(up), _UP_ROTATIONS))
    if not scale > 0:
        raise ConfigError(f"scale must be positive (the farthest vertex's distance from the centre), got {scale!r}.")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    if centre:
        vertices = vertices - 0.5 * (vertices.min(0) + vertices.max(0))
    vertices = vertices @ _UP_ROTATIONS[up].T
    radius = np.linalg.norm(vertices, axis=1).max()
    if not radius > 0:
        raise DistillError("the mesh is degenerate: all its vertices coincide, so it cannot be normalised.")
    return trimesh.Trimesh(vertices / radius * scale, np.asarray(mesh.faces), process=False)


def load_mesh(path, up: str = "y", scale: float = 1.0, centre: bool = True) -> trimesh.Trimesh:
    """Read the triangle mesh at ``path`` (any format trimesh reads: .off, .obj, .ply, .stl, ...)
    and normalise it (see :func:`normalise_mesh`); ``up`` is the axis it stands on in the file."""
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"mesh file {str(path)!r} does not exist; pass the path of a mesh file "
                           f"(shipped meshes are in {MESHES_DIR}).")
    try:
        mesh = trimesh.load(path, force="mesh")
    except Exception as error:  # trimesh raises many kinds for unreadable files
        raise DistillError(f"could not read mesh file {str(path)!r} ({type(error).__name__}: {error}); "
                           "pass a triangle mesh trimesh can read (.off, .obj, .ply, .stl).") from error
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise DistillError(f"mesh file {str(path)!r} holds no triangles; pass a triangle mesh.")
    return normalise_mesh(mesh, up, scale, centre)


def shipped_mesh(name: str, scale: float = 1.0, centre: bool = True) -> trimesh.Trimesh:
    """One of the meshes shipped in ``MESHES_DIR`` (see ``UP_AXIS``), normalised and z-up."""
    if name not in UP_AXIS:
        raise ConfigError(unknown_name_message("shipped mesh", str(name), UP_AXIS))
    return load_mesh(MESHES_DIR / f"{name}.off", UP_AXIS[name], scale, centre)


def box_mesh(extents=(1.0, 1.0, 1.0)) -> trimesh.Trimesh:
    """An axis-aligned box centred at the origin with side lengths ``extents`` (not normalised)."""
    return trimesh.creation.box(extents=extents)


def ellipsoid_mesh(radii=(1.0, 0.6, 0.4), subdivisions: int = 3) -> trimesh.Trimesh:
    """An icosphere squashed into an ellipsoid with semi-axes ``radii`` (not normalised);
    ``subdivisions=3`` gives 1280 faces."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    return trimesh.Trimesh(sphere.vertices * np.asarray(radii, dtype=np.float64), sphere.faces, process=False)


def sample_surface(mesh: trimesh.Trimesh, n: int, seed: int = 0) -> Tensor:
    """``n`` points uniform on the surface (area-weighted), ``(n, 3)`` float32, reproducible by ``seed``."""
    _check_mesh(mesh)
    check_count("n", n)
    points, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
    return torch.as_tensor(np.asarray(points), dtype=torch.float32)


def render_mesh(mesh: trimesh.Trimesh, cameras: OrbitCameras, size, background=0.0, tile: int = 8) -> Tensor:
    """Grey images ``(B, 1, H, W)`` in [0, 1]: headlight Lambertian shading where a pixel's ray hits
    the mesh, ``background`` elsewhere. Not differentiable (a ground-truth renderer); runs on
    the CPU and returns CPU images whatever device ``cameras`` are on.

    Exact per pixel: the image is cut into ``tile × tile`` blocks and each block's rays are
    tested against the faces whose projected bounding box (plus a pixel) overlaps it — a cull
    that only skips faces no ray of the block can hit.
    """
    background = float(background_tensor(background, 1, torch.zeros(1))[0])
    shade, _ = _ray_cast(mesh, cameras, size, tile)
    return torch.where(torch.isnan(shade), torch.full_like(shade, background), shade)[:, None]


def render_mesh_faces(mesh: trimesh.Trimesh, cameras: OrbitCameras, size, tile: int = 8) -> Tensor:
    """The index of the face each pixel's ray hits first, ``(B, H, W)`` (−1 where it misses the mesh): the
    same exact ray casting as :func:`render_mesh`, so labels of faces map onto its images pixel for pixel."""
    return _ray_cast(mesh, cameras, size, tile)[1]


def _ray_cast(mesh: trimesh.Trimesh, cameras: OrbitCameras, size, tile: int) -> tuple[Tensor, Tensor]:
    """Shading ``(B, H, W)`` of each pixel's nearest hit (NaN on a miss) and the face hit (−1 on a miss)."""
    _check_mesh(mesh)
    cameras = as_cameras(cameras).to("cpu", torch.float64)
    height, width = image_size(size)
    check_count("tile", tile)
    vertices = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float64)
    faces = torch.as_tensor(np.asarray(mesh.faces), dtype=torch.long)
    focal = cameras.focal((height, width))
    origins, directions = cameras.rays((height, width))
    shades = torch.full((len(cameras), height, width), torch.nan)
    hits = torch.full((len(cameras), height, width), -1, dtype=torch.long)
    for view in range(len(cameras)):
        per_face = _face_terms(vertices, faces, origins[view])
        low, high = _face_boxes(cameras[view].world_to_camera(vertices)[0][faces], focal, height, width)
        for top in range(0, height, tile):
            for left in range(0, width, tile):
                bottom, right = min(top + tile, height), min(left + tile, width)
                near = ((high[:, 0] >= left - 1) & (low[:, 0] <= right + 1)
                        & (high[:, 1] >= top - 1) & (low[:, 1] <= bottom + 1)).nonzero()[:, 0]
                if len(near) == 0:
                    continue
                rays = directions[view, top:bottom, left:right].reshape(-1, 3).float()
                shade, face = _cast([x[near] for x in per_face], rays)
                shape = (bottom - top, right - left)
                shades[view, top:bottom, left:right] = shade.reshape(shape)
                hits[view, top:bottom, left:right] = torch.where(face < 0, face, near[face.clamp_min(0)]).reshape(shape)
    return shades, hits


def _face_boxes(corners: Tensor, focal: float, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Pixel bounding boxes ``(F, 2)`` (low, high) of faces given their camera-space corners
    ``(F, 3, 3)``; a face reaching behind the camera gets an unbounded box."""
    z = corners[..., 2]
    front = (z > 1e-6).all(-1)
    safe = torch.where(front[:, None], z, torch.ones_like(z))
    pixels = torch.stack([focal * corners[..., 0] / safe + width / 2, focal * corners[..., 1] / safe + height / 2], -1)
    low, high = pixels.amin(1), pixels.amax(1)
    low[~front], high[~front] = -torch.inf, torch.inf
    return low, high


def _face_terms(vertices: Tensor, faces: Tensor, origin: Tensor) -> list[Tensor]:
    """Per-face Möller–Trumbore terms for rays that all start at ``origin``.

    With ``e1 = v1 - v0``, ``e2 = v2 - v0``, ``s = o - v0``: ``a = e2 × e1``, ``b = e2 × s``,
    ``c = s × e1`` and ``k = e2 · c`` turn the test of a ray ``d`` into ``det = d · a``,
    ``u = d · b / det``, ``v = d · c / det``, ``t = k / det`` — matrix products over rays × faces.
    Computed in float64, returned in float32 with the unit normals and ``|a|`` (twice the area).
    """
    v0, v1, v2 = vertices[faces].unbind(1)
    e1, e2, s = v1 - v0, v2 - v0, origin - v0
    a, b, c = torch.linalg.cross(e2, e1), torch.linalg.cross(e2, s), torch.linalg.cross(s, e1)
    k = (e2 * c).sum(-1)
    normals = torch.nn.functional.normalize(-a, dim=-1)
    return [x.float() for x in (a, b, c, k, normals, a.norm(dim=-1))]


def _cast(per_face: list[Tensor], rays: Tensor) -> tuple[Tensor, Tensor]:
    """Shading of each ray's ``(R, 3)`` nearest hit among the faces of ``per_face`` (NaN for a miss) and the
    position of that face in ``per_face`` (−1 for a miss)."""
    a, b, c, k, normals, area = per_face
    det = rays @ a.T
    ok = det.abs() > 1e-9 * area
    inv = torch.where(ok, 1.0 / torch.where(ok, det, torch.ones_like(det)), torch.zeros_like(det))
    u, v, t = (rays @ b.T) * inv, (rays @ c.T) * inv, k * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-6)
    nearest, face = torch.where(hit, t, torch.full_like(t, torch.inf)).min(dim=-1)
    shade = AMBIENT + (1 - AMBIENT) * (normals[face] * rays).sum(-1).abs()
    miss = torch.isinf(nearest)
    return torch.where(miss, torch.full_like(shade, torch.nan), shade), torch.where(miss, -1, face)


def _check_mesh(mesh) -> None:
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ConfigError(f"expected a triangle mesh (trimesh.Trimesh with faces, e.g. from load_mesh), "
                          f"got {type(mesh).__name__}.")
