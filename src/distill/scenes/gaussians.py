"""3-D Gaussian splatting in plain PyTorch: a differentiable scene of anisotropic Gaussians.

Each Gaussian has a centre, per-axis log-scales and a rotation (unit quaternion, w first)
giving the world covariance ``Sigma = R S S^T R^T`` (Kerbl et al. 2023, "3D Gaussian
Splatting for Real-Time Radiance Field Rendering"). It is projected to the image with the
local affine (EWA) approximation of the perspective map, ``Sigma' = J W Sigma W^T J^T``
(Zwicker et al. 2001, "EWA Volume Splatting"), widened by a 0.3 px^2 low-pass, evaluated
densely at every pixel centre and alpha-composited near→far in the order of camera depth.
Dense evaluation costs ``views × H·W × N``: meant for up to ~1024 Gaussians at 32-64 px.
Registered in ``REPRESENTATIONS`` as ``gaussians``; saved as a PLY point cloud.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.errors import ConfigError, DistillError, check_count
from distill.scenes.cameras import OrbitCameras, as_cameras, image_size
from distill.scenes.composite import background_tensor, compositing_weights
from distill.scenes.io import checked_path, read_ply_vertices, write_ply_vertices
from distill.scenes.marching import ray_samples
from distill.scenes.representation import REPRESENTATIONS, Representation, check_channels

LOW_PASS = 0.3  # px^2 added to the projected covariance's diagonal (3DGS's screen-space filter)
MAX_ALPHA = 0.99
FRUSTUM_SLACK = 1.3  # the Jacobian is taken at x/z clamped to 1.3 × the half field of view, as in 3DGS


def quaternion_to_rotation(quaternions: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` of quaternions ``(..., 4)`` ``(w, x, y, z)``, normalised first."""
    w, x, y, z = (quaternions / quaternions.norm(dim=-1, keepdim=True)).unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, dim=-1).reshape(*quaternions.shape[:-1], 3, 3)


def _logit(p: Tensor, eps: float = 1e-4) -> Tensor:
    p = p.clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


class GaussianScene(Representation):
    """``N`` Gaussians with ``C`` channels (colour: 1 grey or 3 RGB; a feature field: any); every tensor
    is a parameter.

    ``positions`` (N, 3) world centres; ``log_scales`` (N, 3) per-axis log standard
    deviations; ``rotations`` (N, 4) quaternions ``(w, x, y, z)`` (identity: axis-aligned);
    ``opacity_logits`` (N,) passed through a sigmoid; ``colour_logits`` (N, C) passed through a
    sigmoid for colour, taken as they are for a feature field (``features=True``).
    """

    suffix = ".ply"

    def __init__(self, positions: Tensor, log_scales: Tensor, opacity_logits: Tensor, colour_logits: Tensor,
                 rotations: Tensor | None = None, features: bool = False) -> None:
        super().__init__()
        n = _check_shape(positions, "positions", (None, 3))
        _check_shape(log_scales, "log_scales", (n, 3))
        _check_shape(opacity_logits, "opacity_logits", (n,))
        _check_shape(colour_logits, "colour_logits", (n, None))
        check_channels(colour_logits.shape[1], features)
        self._features = bool(features)
        if rotations is None:
            rotations = torch.zeros(n, 4, dtype=positions.dtype, device=positions.device)
            rotations[:, 0] = 1.0
        _check_shape(rotations, "rotations", (n, 4))
        if n == 0:
            raise ConfigError("a GaussianScene needs at least one Gaussian; got 0 positions.")
        self.positions = nn.Parameter(positions.detach().clone())
        self.log_scales = nn.Parameter(log_scales.detach().clone().to(positions))
        self.rotations = nn.Parameter(rotations.detach().clone().to(positions))
        self.opacity_logits = nn.Parameter(opacity_logits.detach().clone().to(positions))
        self.colour_logits = nn.Parameter(colour_logits.detach().clone().to(positions))

    @classmethod
    def random(cls, n: int, radius: float = 0.5, channels: int = 3, generator: torch.Generator | None = None,
               scale: float | None = None, opacity: float = 0.1, features: bool = False) -> GaussianScene:
        """3-D Gaussian splats (Kerbl et al. 2023): ``n`` Gaussians uniform in the ball of ``radius``;
        ``scale`` defaults to their mean spacing ``radius * (4 pi / 3n)^(1/3)``; colours near grey
        (features near 0) with a little noise; ``opacity`` as 3DGS's 0.1."""
        check_count("n", n)
        if radius <= 0:
            raise ConfigError(f"radius must be > 0, got {radius}.")
        check_channels(channels, features)
        direction = torch.randn(n, 3, generator=generator)
        direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        positions = direction * radius * torch.rand(n, 1, generator=generator) ** (1 / 3)
        scale = radius * (4 * math.pi / (3 * n)) ** (1 / 3) if scale is None else scale
        colours = 0.5 * torch.randn(n, channels, generator=generator)
        return cls._build(positions, torch.full((n, 3), float(scale)), torch.full((n,), float(opacity)), colours,
                          features, raw=True)

    @classmethod
    def from_points(cls, points: Tensor, colours: Tensor | None = None, channels: int = 3,
                    scale: float | Tensor | None = None, opacity: float = 0.1, features: bool = False) -> GaussianScene:
        """One isotropic Gaussian per point; ``colours`` (N, C) in [0, 1] (grey 0.5 if omitted; a feature
        field's values as they are, 0 if omitted); ``scale`` defaults, as in 3DGS, to the
        root-mean-square distance to the 3 nearest other points."""
        n = _check_shape(points, "points", (None, 3))
        if n < 1:
            raise ConfigError("from_points needs at least one point.")
        points = points.detach()
        if colours is not None:
            _check_shape(colours, "colours", (n, None))
            channels = colours.shape[1]
        check_channels(channels, features)
        if scale is None:
            scale = _nearest_spacing(points)
        scale = torch.as_tensor(scale, dtype=points.dtype).expand(n)[:, None].expand(n, 3)
        colours = torch.full((n, channels), 0.0 if features else 0.5) if colours is None else colours
        return cls._build(points, scale, torch.full((n,), float(opacity)), colours.to(points), features)

    @classmethod
    def _build(cls, positions, scales, opacities, colours, features: bool = False, raw: bool = False,
               rotations=None) -> GaussianScene:
        """From activated values (``raw``: ``colours`` are already logits, or features)."""
        if not ((opacities > 0) & (opacities < 1)).all():
            raise ConfigError(f"opacity must lie strictly between 0 and 1, got values in "
                              f"[{float(opacities.min())}, {float(opacities.max())}].")
        if (scales <= 0).any():
            raise ConfigError("scale must be > 0.")
        logits = colours if raw or features else _logit(colours)
        return cls(positions, scales.log(), _logit(opacities), logits.to(positions), rotations, features)

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def channels(self) -> int:
        return self.colour_logits.shape[1]

    @property
    def features(self) -> bool:
        return self._features

    @property
    def scales(self) -> Tensor:
        return self.log_scales.exp()

    @property
    def opacities(self) -> Tensor:
        return torch.sigmoid(self.opacity_logits)

    @property
    def colours(self) -> Tensor:
        """Per-Gaussian channel values ``(N, C)``: colours in [0, 1], or a feature field's raw features."""
        return self.colour_logits if self.features else torch.sigmoid(self.colour_logits)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """One group per attribute, as 3DGS sets a learning rate per attribute."""
        return {"positions": [self.positions], "scales": [self.log_scales], "rotations": [self.rotations],
                "opacities": [self.opacity_logits], "features" if self.features else "colours": [self.colour_logits]}

    def save(self, path) -> Path:
        """Write the Gaussians as a PLY point cloud (see :func:`write_ply`)."""
        return write_ply(self, path)

    @classmethod
    def load(cls, path) -> GaussianScene:
        """The Gaussians :func:`write_ply` wrote to ``path`` (see :func:`read_ply`)."""
        return read_ply(path)

    def covariances(self) -> Tensor:
        """World covariances ``(N, 3, 3)``: ``R diag(s^2) R^T``."""
        m = quaternion_to_rotation(self.rotations) * self.scales[:, None, :]
        return m @ m.transpose(-1, -2)

    def render(self, cameras: OrbitCameras, size, background=0.0, near: float = 0.01,
               max_elements: int = 2 ** 24) -> Tensor:
        """Images ``(B, C, H, W)`` in [0, 1] seen by ``cameras``; Gaussians with camera depth
        ``<= near`` contribute nothing; views are rendered in chunks of about ``max_elements``
        pixel-Gaussian pairs."""
        cameras = as_cameras(cameras).to(device=self.positions.device, dtype=self.positions.dtype)
        height, width = image_size(size)
        if near <= 0:
            raise ConfigError(f"near must be > 0, got {near}.")
        background = background_tensor(background, self.channels, self.positions, bounded=not self.features)
        per_chunk = max(1, max_elements // (height * width * len(self)))
        images = []
        for i in range(0, len(cameras), per_chunk):
            weights, final, colours, _, _ = self._layers(cameras[i:i + per_chunk], height, width, near)
            images.append(weights @ colours + final[..., None] * background)             # (b, HW, C)
        return torch.cat(images).reshape(len(cameras), height, width, self.channels).permute(0, 3, 1, 2)

    def render_depth(self, cameras: OrbitCameras, size, near: float = 0.01) -> tuple[Tensor, Tensor]:
        """Expected camera depth ``(B, H, W)`` (Σ T_k α_k z_k, normalised by the opacity where it is > 0)
        and accumulated opacity ``(B, H, W)``: the geometry a depth map unprojects."""
        cameras = as_cameras(cameras).to(device=self.positions.device, dtype=self.positions.dtype)
        height, width = image_size(size)
        depths, opacities = [], []
        for i in range(len(cameras)):
            weights, final, _, z, _ = self._layers(cameras[i:i + 1], height, width, near)
            opacity = 1.0 - final
            depths.append((weights @ z[..., None])[..., 0] / opacity.clamp_min(1e-6))
            opacities.append(opacity)
        shape = (len(cameras), height, width)
        return torch.cat(depths).reshape(shape), torch.cat(opacities).reshape(shape)

    @torch.no_grad()
    def blending_importance(self, cameras: OrbitCameras, size, near: float = 0.01) -> Tensor:
        """Each Gaussian's compositing weights ``T_k alpha_k`` summed over every pixel of every view, ``(N,)``:
        how much of the images it makes (the accumulated blending weight by which LightGaussian, Fan et al.
        2023, and Mini-Splatting, Fang & Wang 2024, prune). 0 for a Gaussian outside every view or
        hidden behind opaque ones."""
        cameras = as_cameras(cameras).to(device=self.positions.device, dtype=self.positions.dtype)
        height, width = image_size(size)
        importance = torch.zeros(len(self), dtype=self.positions.dtype, device=self.positions.device)
        for i in range(len(cameras)):
            weights, _, _, _, order = self._layers(cameras[i:i + 1], height, width, near)
            importance.index_add_(0, order[0], weights[0].sum(0))
        return importance

    def subset(self, keep: Tensor) -> GaussianScene:
        """A new scene of the Gaussians selected by ``keep`` (indices or a boolean mask), copied."""
        keep = torch.as_tensor(keep, device=self.positions.device)
        if keep.dtype == torch.bool:
            if keep.shape != (len(self),):
                raise ConfigError(f"a mask of Gaussians must have shape ({len(self)},), got {tuple(keep.shape)}.")
            keep = keep.nonzero()[:, 0]
        if keep.dim() != 1 or len(keep) == 0:
            raise ConfigError(f"keep must name at least one Gaussian (1-D indices or a mask), got shape "
                              f"{tuple(keep.shape)}.")
        return GaussianScene(self.positions[keep], self.log_scales[keep], self.opacity_logits[keep],
                             self.colour_logits[keep], self.rotations[keep], self.features)

    def point_values(self, points: Tensor, directions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The Gaussians read as a volume: pre-activation density ``(...)`` (``softplus`` of it is the
        density per unit length) and channel values ``(..., C)`` at world ``points`` ``(..., 3)`` seen along
        unit ``directions`` (broadcast against ``points``; None: averaged over directions).

        Gaussian ``i`` contributes the density ``lambda_i exp(-m_i(x) / 2)`` (``m_i`` its Mahalanobis
        distance) with ``lambda_i = -log(1 - o_i) sqrt(d^T Sigma_i^-1 d) / sqrt(2 pi)``: a ray through its
        centre along ``d`` then accumulates the optical depth ``-log(1 - o_i)``, i.e. the opacity ``o_i``
        its splat has there (the ray integral of a Gaussian; Max 1995; Kerbl et al. 2023). Channels are
        the density-weighted mean of the Gaussians' channels.
        """
        if points.shape[-1] != 3:
            raise ConfigError(f"points must have shape (..., 3), got {tuple(points.shape)}.")
        precision = self._precisions()                                              # (N, 3, 3)
        # log of each Gaussian's weight at each point, in log space so far from every Gaussian the density is
        # tiny, never 0, and the channels stay those of the nearest Gaussians: one product gives
        # -m/2 + log(-log(1 - o)) - log(2 pi)/2, the directional factor is added per ray
        terms = _precision_terms(precision, self.positions) * -0.5
        terms[:, -1] += F.softplus(self.opacity_logits).log() - 0.5 * math.log(2 * math.pi)
        log_weights = _second_moments(points.to(precision)) @ terms.T                 # (..., N)
        if directions is None:
            along = precision.diagonal(dim1=-2, dim2=-1).sum(-1) / 3                    # the mean of d^T P d
        else:
            along = _second_moments(directions.to(precision))[..., :6] @ _precision_terms(precision, None).T
        log_weights = log_weights + 0.5 * along.clamp_min(1e-12).log()
        log_density = log_weights.logsumexp(-1)
        values = torch.exp(log_weights - log_density[..., None]) @ self.colours
        density = log_density.exp()
        bounded = density.clamp(1e-6, 20.0)                       # softplus^-1(s) = log s + log(expm1(s) / s)
        logits = torch.where(density > 20.0, density, log_density + torch.log(torch.expm1(bounded) / bounded))
        return logits, values

    def ray_samples(self, cameras: OrbitCameras, size, samples: int = 64, jitter: bool = False,
                    generator: torch.Generator | None = None):
        """Samples along every pixel's ray through the cube holding every Gaussian to three standard
        deviations (see :func:`~distill.scenes.marching.ray_samples`)."""
        with torch.no_grad():
            bound = float((self.positions.abs().amax(-1) + 3 * self.scales.amax(-1)).amax().clamp_min(1e-3))
        cameras = as_cameras(cameras).to(device=self.positions.device, dtype=self.positions.dtype)
        return ray_samples(cameras, size, bound, samples, jitter, generator)

    def _precisions(self) -> Tensor:
        """Inverse covariances ``(N, 3, 3)``: ``R diag(1 / s^2) R^T``."""
        m = quaternion_to_rotation(self.rotations) / self.scales[:, None, :]
        return m @ m.transpose(-1, -2)

    def _layers(self, cameras: OrbitCameras, height: int, width: int, near: float):
        """Compositing weights (b, HW, N) and final transmittance (b, HW) of the depth-sorted Gaussians,
        with their colours (b, N, C), camera depths (b, N) and indices (b, N) in that order."""
        focal = cameras.focal((height, width))
        rotation = cameras.rotation()
        points = cameras.world_to_camera(self.positions)                          # (b, N, 3)
        cov = rotation[:, None] @ self.covariances()[None] @ rotation[:, None].transpose(-1, -2)
        x, y, z = points.unbind(-1)
        visible = z > near
        z = torch.where(visible, z, torch.ones_like(z))                           # no division by <= 0
        half_x = math.tan(math.radians(cameras.fov_degrees) / 2)
        limit_x, limit_y = FRUSTUM_SLACK * half_x, FRUSTUM_SLACK * half_x * height / width
        tx = (x / z).clamp(-limit_x, limit_x) * z
        ty = (y / z).clamp(-limit_y, limit_y) * z
        zero = torch.zeros_like(z)
        jacobian = torch.stack([focal / z, zero, -focal * tx / z ** 2,
                                zero, focal / z, -focal * ty / z ** 2], dim=-1).reshape(*z.shape, 2, 3)
        cov2d = jacobian @ cov @ jacobian.transpose(-1, -2)
        a, b, c = cov2d[..., 0, 0] + LOW_PASS, cov2d[..., 0, 1], cov2d[..., 1, 1] + LOW_PASS
        det = a * c - b * b
        conic = torch.stack([c / det, -b / det, a / det], dim=-1)                 # inverse of the 2-D covariance
        mean = torch.stack([focal * x / z + width / 2, focal * y / z + height / 2], dim=-1)
        opacity = self.opacities[None] * visible

        order = torch.argsort(torch.where(visible, z, torch.full_like(z, math.inf)), dim=-1)
        mean = mean.gather(1, order[..., None].expand_as(mean))
        conic = conic.gather(1, order[..., None].expand_as(conic))
        opacity = opacity.gather(1, order)
        colours = self.colours[order]                                             # (b, N, C)

        power = _quadratic_form(mean, conic, height, width)                       # (b, HW, N)
        alpha = (opacity[:, None, :] * torch.exp(power)).clamp(max=MAX_ALPHA)
        weights, final = compositing_weights(alpha)
        return weights, final, colours, z.gather(1, order), order


def _quadratic_form(mean: Tensor, conic: Tensor, height: int, width: int) -> Tensor:
    """``-1/2 (p - m)^T Sigma^-1 (p - m)`` for every pixel centre ``p`` and Gaussian, ``(b, H·W, N)``.

    Expanded into monomials of ``p`` so one matrix product replaces a dozen (pixels × Gaussians)
    element-wise passes; coordinates are taken from the image centre to keep the terms small
    (the low-pass bounds the conic by 1/0.3 px^-2, so for a mean on or near a 64 px image float32
    loses at most ~1e-3 of ``power``; far off-screen means only err where ``exp(power)`` is ~0).
    """
    centre = mean.new_tensor([width / 2, height / 2])
    mx, my = (mean - centre).unbind(-1)                                            # (b, N)
    a, b, c = conic.unbind(-1)
    gaussian_terms = torch.stack([-0.5 * a, -b, -0.5 * c, a * mx + b * my, b * mx + c * my,
                                  -0.5 * (a * mx * mx + 2 * b * mx * my + c * my * my)], dim=-1)
    v, u = torch.meshgrid(torch.arange(height, dtype=mean.dtype, device=mean.device) + 0.5 - height / 2,
                          torch.arange(width, dtype=mean.dtype, device=mean.device) + 0.5 - width / 2,
                          indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    pixel_terms = torch.stack([u * u, u * v, v * v, u, v, torch.ones_like(u)], dim=-1)   # (HW, 6)
    return (pixel_terms @ gaussian_terms.transpose(-1, -2)).clamp(max=0.0)


def _second_moments(x: Tensor) -> Tensor:
    """``[x^2, y^2, z^2, 2xy, 2xz, 2yz, x, y, z, 1]`` of points ``(..., 3)``, ``(..., 10)``: with
    :func:`_precision_terms`, one matrix product gives every point's quadratic form under every Gaussian."""
    x, y, z = x.unbind(-1)
    return torch.stack([x * x, y * y, z * z, 2 * x * y, 2 * x * z, 2 * y * z, x, y, z, torch.ones_like(x)], -1)


def _precision_terms(precision: Tensor, means: Tensor | None) -> Tensor:
    """The coefficients ``(N, 10)`` (``(N, 6)`` without ``means``) of ``(x - mu)^T P (x - mu)`` in the monomials of
    :func:`_second_moments`."""
    quadratic = torch.stack([precision[:, 0, 0], precision[:, 1, 1], precision[:, 2, 2], precision[:, 0, 1],
                             precision[:, 0, 2], precision[:, 1, 2]], -1)
    if means is None:
        return quadratic
    pm = (precision @ means[..., None])[..., 0]                                      # (N, 3)
    return torch.cat([quadratic, -2 * pm, (means * pm).sum(-1, keepdim=True)], -1)


def _nearest_spacing(points: Tensor, k: int = 3, chunk: int = 2048) -> Tensor:
    if len(points) == 1:
        return torch.full((1,), 0.01, dtype=points.dtype)
    k = min(k, len(points) - 1)
    out = []
    for start in range(0, len(points), chunk):
        d = torch.cdist(points[start:start + chunk], points)
        nearest = d.topk(k + 1, dim=-1, largest=False).values[:, 1:]             # drop the point itself
        out.append(nearest.pow(2).mean(-1).sqrt())
    return torch.cat(out).clamp_min(1e-4)


def _check_shape(tensor, name: str, shape: tuple) -> int:
    if not isinstance(tensor, Tensor):
        raise ConfigError(f"{name} must be a tensor, got {type(tensor).__name__}.")
    want = "(" + ", ".join("N" if s is None and i == 0 else ("C" if s is None else str(s))
                           for i, s in enumerate(shape)) + ("," if len(shape) == 1 else "") + ")"
    if tensor.dim() != len(shape) or any(s is not None and t != s for t, s in zip(tensor.shape, shape)):
        raise ConfigError(f"{name} must have shape {want}, got {tuple(tensor.shape)}.")
    if not tensor.is_floating_point():
        raise ConfigError(f"{name} must be a floating-point tensor, got {tensor.dtype}.")
    return tensor.shape[0]


def write_ply(scene: GaussianScene, path) -> Path:
    """Write the Gaussians' centres as a binary little-endian PLY point cloud and return the path.

    Per vertex: ``x, y, z``; for colour, uint8 ``red, green, blue`` (grey scenes repeat their one
    channel) and the exact float ``colour_0..C-1`` in [0, 1]; for a feature field, float
    ``feature_0..C-1``; ``opacity`` in [0, 1]; ``scale_0..2`` the per-axis standard deviations in
    world units (not their logs); ``rot_0..3`` the unit quaternion ``(w, x, y, z)``. ``trimesh.load``
    reads it back as a ``PointCloud`` (the extra properties are in ``metadata["_ply_raw"]``);
    :func:`read_ply` reads it back as a ``GaussianScene``.
    """
    if not isinstance(scene, GaussianScene):
        raise ConfigError(f"write_ply needs a GaussianScene, got {type(scene).__name__}.")
    path = checked_path(path, ".ply", "write_ply")
    name = "feature" if scene.features else "colour"
    columns = {axis: scene.positions[:, i] for i, axis in enumerate("xyz")}
    with torch.no_grad():
        if not scene.features:
            rgb = scene.colours.expand(-1, 3) if scene.channels == 1 else scene.colours
            columns |= {colour: (rgb[:, i] * 255).round() for i, colour in enumerate(("red", "green", "blue"))}
        columns |= {f"{name}_{i}": scene.colours[:, i] for i in range(scene.channels)}
        columns |= {"opacity": scene.opacities} | {f"scale_{i}": scene.scales[:, i] for i in range(3)}
        rotations = torch.nn.functional.normalize(scene.rotations, dim=-1)
        columns |= {f"rot_{i}": rotations[:, i] for i in range(4)}
        kinds = {key: "u1" if key in ("red", "green", "blue") else "<f4" for key in columns}
        table = np.empty(len(scene), dtype=list(kinds.items()))
        for key, values in columns.items():
            table[key] = values.detach().double().cpu().numpy()
    return write_ply_vertices(path, table, "distill GaussianScene")


def read_ply(path) -> GaussianScene:
    """The ``GaussianScene`` :func:`write_ply` wrote to ``path`` (logits recovered in float64)."""
    table = read_ply_vertices(path)
    names = table.dtype.names
    need = ["x", "y", "z", "opacity", *(f"scale_{i}" for i in range(3)), *(f"rot_{i}" for i in range(4))]
    features = "feature_0" in names
    channels = [key for key in names if key.startswith("feature_" if features else "colour_")]
    missing = [key for key in need if key not in names] + ([] if channels else ["colour_0 or feature_0"])
    if missing:
        raise DistillError(f"{str(path)!r} is not a GaussianScene file written by distill: it lacks the "
                           f"properties {', '.join(missing)}.")

    def column(*keys):
        return torch.from_numpy(np.stack([table[key].astype(np.float64) for key in keys], axis=1))

    colours = column(*channels)
    colours = colours if features else _logit(colours, eps=1e-7)
    scene = GaussianScene._build(column("x", "y", "z"), column(*(f"scale_{i}" for i in range(3))),
                                 column("opacity")[:, 0].clamp(1e-7, 1 - 1e-7), colours, features, raw=True,
                                 rotations=column(*(f"rot_{i}" for i in range(4))))
    return scene.float()


REPRESENTATIONS.register("gaussians")(GaussianScene.random)
