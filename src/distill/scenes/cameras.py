"""Perspective pinhole cameras on an orbit around the origin.

Conventions (shared by every renderer of this package):

* **World**: right-handed, **+z is up**. A camera at azimuth ``a`` and elevation ``e``
  (degrees; elevation measured from the horizontal xy-plane, positive above it) sits at
  ``radius * (cos e cos a, cos e sin a, sin e)`` and looks at the origin. Azimuth 0 looks
  along -x, azimuth 90 along -y.
* **Camera frame** (OpenCV): x right, y down, z forward (depth); a point is in front of
  the camera when its camera z is positive. ``x_cam = R @ x_world + t`` with ``R``'s rows
  (right, down, forward) and ``t = -R @ position``.
* **Pixels**: images are ``(H, W)``, row 0 at the top; pixel ``(row i, column j)`` has its
  centre at ``(u, v) = (j + 0.5, i + 0.5)``; the principal point is the image centre
  ``(W / 2, H / 2)``; pixels are square and ``fov_degrees`` spans the image width, so
  ``focal = (W / 2) / tan(fov / 2)`` pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from distill.errors import ConfigError, check_count

WORLD_UP = (0.0, 0.0, 1.0)


def image_size(size) -> tuple[int, int]:
    """``size`` (an int for a square image, or ``(height, width)``) as ``(H, W)``, validated."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in size)):
        raise ConfigError(f"image size must be an int or a (height, width) pair of ints, got {size!r}.")
    if min(size) < 1:
        raise ConfigError(f"image size must be at least 1 pixel each way, got {tuple(size)}; pass e.g. size=32.")
    return int(size[0]), int(size[1])


def _check_fov(fov_degrees: float) -> float:
    if not isinstance(fov_degrees, (int, float)) or isinstance(fov_degrees, bool) or not 0.0 < fov_degrees < 180.0:
        raise ConfigError(f"fov_degrees must be a number strictly between 0 and 180, got {fov_degrees!r}; "
                          "pass e.g. fov_degrees=45.")
    return float(fov_degrees)


def _as_vector(value, name: str, n: int | None = None) -> Tensor:
    tensor = value if isinstance(value, Tensor) else torch.as_tensor(value, dtype=torch.get_default_dtype())
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.get_default_dtype())
    if tensor.dim() == 0 and n is not None:
        tensor = tensor.expand(n)
    if tensor.dim() != 1 or (n is not None and len(tensor) != n):
        want = f"({n},)" if n is not None else "(B,)"
        raise ConfigError(f"{name} must be a 1-D tensor of shape {want}, got shape {tuple(tensor.shape)}.")
    if not torch.isfinite(tensor).all():
        raise ConfigError(f"{name} must be finite, got {tensor.tolist()}.")
    return tensor


@dataclass(frozen=True, eq=False)
class OrbitCameras:
    """``B`` pinhole cameras looking at the origin; angles in degrees (see the module docstring).

    ``azimuth`` and ``elevation`` have shape ``(B,)``; ``radius`` is a float or a ``(B,)``
    tensor (distance from the origin, > 0); elevation must lie strictly inside (-90, 90).
    """

    azimuth: Tensor
    elevation: Tensor
    radius: Tensor | float = 3.0
    fov_degrees: float = 45.0

    def __post_init__(self) -> None:
        azimuth = _as_vector(self.azimuth, "azimuth")
        elevation = _as_vector(self.elevation, "elevation", len(azimuth)).to(azimuth)
        radius = _as_vector(self.radius, "radius", len(azimuth)).to(azimuth)
        if len(azimuth) == 0:
            raise ConfigError("OrbitCameras needs at least one camera; got an empty azimuth tensor.")
        if (elevation.abs() >= 90.0).any():
            raise ConfigError(f"elevation must lie strictly between -90 and 90 degrees (the view direction "
                              f"would be parallel to the world up +z), got {elevation.tolist()}.")
        if (radius <= 0).any():
            raise ConfigError(f"radius must be > 0, got {radius.tolist()}.")
        object.__setattr__(self, "azimuth", azimuth)
        object.__setattr__(self, "elevation", elevation)
        object.__setattr__(self, "radius", radius)
        object.__setattr__(self, "fov_degrees", _check_fov(self.fov_degrees))

    def __len__(self) -> int:
        return len(self.azimuth)

    def __getitem__(self, index) -> OrbitCameras:
        """A subset of the cameras (an int, slice, index tensor or boolean mask)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return OrbitCameras(self.azimuth[index], self.elevation[index], self.radius[index], self.fov_degrees)

    def to(self, *args, **kwargs) -> OrbitCameras:
        """The same cameras with their tensors moved/cast like ``Tensor.to``."""
        return OrbitCameras(self.azimuth.to(*args, **kwargs), self.elevation.to(*args, **kwargs),
                            self.radius.to(*args, **kwargs), self.fov_degrees)

    def positions(self) -> Tensor:
        """Camera centres in world space, ``(B, 3)``."""
        az, el = torch.deg2rad(self.azimuth), torch.deg2rad(self.elevation)
        direction = torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], dim=-1)
        return self.radius[:, None] * direction

    def rotation(self) -> Tensor:
        """World→camera rotations ``(B, 3, 3)``: rows are the camera's right, down and forward axes."""
        forward = -self.positions() / self.radius[:, None]
        up = forward.new_tensor(WORLD_UP).expand_as(forward)
        right = torch.linalg.cross(forward, up)
        right = right / right.norm(dim=-1, keepdim=True)
        down = torch.linalg.cross(forward, right)
        return torch.stack([right, down, forward], dim=-2)

    def translation(self) -> Tensor:
        """World→camera translations ``(B, 3)``: ``t = -R @ position`` (the origin is at depth ``radius``)."""
        return -(self.rotation() @ self.positions()[..., None])[..., 0]

    def world_to_camera(self, points: Tensor) -> Tensor:
        """``points`` ``(N, 3)`` (shared) or ``(B, N, 3)`` in camera coordinates, ``(B, N, 3)``."""
        rotation, translation = self.rotation().to(points), self.translation().to(points)
        return points @ rotation.transpose(-1, -2) + translation[:, None, :]

    def focal(self, size) -> float:
        """Focal length in pixels for images of ``size``: ``(W / 2) / tan(fov / 2)``."""
        _, width = image_size(size)
        return 0.5 * width / math.tan(math.radians(self.fov_degrees) / 2)

    def rays(self, size) -> tuple[Tensor, Tensor]:
        """World-space rays through the pixel centres: origins ``(B, 3)`` and unit directions ``(B, H, W, 3)``."""
        height, width = image_size(size)
        focal = self.focal((height, width))
        like = self.azimuth
        v, u = torch.meshgrid(torch.arange(height, dtype=like.dtype, device=like.device) + 0.5,
                              torch.arange(width, dtype=like.dtype, device=like.device) + 0.5, indexing="ij")
        camera = torch.stack([(u - width / 2) / focal, (v - height / 2) / focal, torch.ones_like(u)], dim=-1)
        camera = camera / camera.norm(dim=-1, keepdim=True)
        directions = torch.einsum("hwc,bcd->bhwd", camera, self.rotation())  # R^T d for each view
        return self.positions(), directions


def orbit(n: int, elevation: float = 15.0, radius: float = 3.0, fov_degrees: float = 45.0,
          start_azimuth: float = 0.0) -> OrbitCameras:
    """``n`` cameras at one elevation with evenly spaced azimuths ``start + 360 k / n`` degrees."""
    check_count("the number of cameras", n)
    azimuth = start_azimuth + 360.0 * torch.arange(n, dtype=torch.get_default_dtype()) / n
    return OrbitCameras(azimuth, torch.full((n,), float(elevation)), float(radius), fov_degrees)


def random_cameras(n: int, generator: torch.Generator | None = None,
                   elevation_range: tuple[float, float] = (-10.0, 60.0),
                   azimuth_range: tuple[float, float] = (0.0, 360.0),
                   radius: float | tuple[float, float] = 3.0, fov_degrees: float = 45.0) -> OrbitCameras:
    """``n`` cameras with azimuth, elevation (and radius, when a ``(low, high)`` pair) drawn uniformly."""
    check_count("the number of cameras", n)

    def uniform(bounds, name):
        if (not isinstance(bounds, (tuple, list)) or len(bounds) != 2
                or not all(isinstance(b, (int, float)) for b in bounds) or bounds[0] > bounds[1]):
            raise ConfigError(f"{name} must be a (low, high) pair with low <= high, got {bounds!r}.")
        return bounds[0] + (bounds[1] - bounds[0]) * torch.rand(n, generator=generator)

    azimuth = uniform(azimuth_range, "azimuth_range")
    elevation = uniform(elevation_range, "elevation_range")
    radius = uniform(radius, "radius") if isinstance(radius, (tuple, list)) else float(radius)
    return OrbitCameras(azimuth, elevation, radius, fov_degrees)


def pose_vector(cameras: OrbitCameras) -> Tensor:
    """The view conditioning a view-conditioned prior receives: ``(sin az, cos az, sin el, cos el)``, ``(B, 4)``."""
    if not isinstance(cameras, OrbitCameras):
        raise ConfigError(f"pose_vector needs OrbitCameras, got {type(cameras).__name__}.")
    az, el = torch.deg2rad(cameras.azimuth), torch.deg2rad(cameras.elevation)
    return torch.stack([az.sin(), az.cos(), el.sin(), el.cos()], dim=-1)


def as_cameras(cameras) -> OrbitCameras:
    """``cameras`` checked to be :class:`OrbitCameras` (renderers call this on their input)."""
    if not isinstance(cameras, OrbitCameras):
        raise ConfigError(f"renderers take OrbitCameras (see distill.scenes.orbit), "
                          f"got {type(cameras).__name__}.")
    return cameras
