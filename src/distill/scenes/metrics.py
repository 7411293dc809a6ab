"""How close a representation is to the real object: its visible surface against the true one
(Chamfer distance of depth-fused points) and its renders against the truth (PSNR / SSIM)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from distill.errors import ConfigError
from distill.scenes.cameras import OrbitCameras
from distill.scenes.representation import Representation


def chamfer_distance(a: Tensor, b: Tensor, chunk: int = 4096) -> float:
    """Symmetric Chamfer distance ``(mean_i min_j |a_i - b_j| + mean_j min_i |a_i - b_j|) / 2``
    (Euclidean, not squared; halved so a set and its copy shifted by ``e`` are ``≈ |e|`` apart
    when ``e`` is small against the point spacing). ``a`` is ``(N, 3)``, ``b`` is ``(M, 3)``."""
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != 3 or len(x) == 0:
            raise ConfigError(f"chamfer_distance needs {name} of shape (N, 3) with N >= 1, got "
                              f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}.")
    a, b = a.detach().double(), b.detach().to(a.device).double()

    def one_way(p: Tensor, q: Tensor) -> Tensor:
        return torch.cat([torch.cdist(p[i:i + chunk], q).amin(dim=1) for i in range(0, len(p), chunk)]).mean()

    return float(0.5 * (one_way(a, b) + one_way(b, a)))


@torch.no_grad()
def surface_points(scene: Representation, cameras: OrbitCameras, size: int, min_opacity: float = 0.5) -> Tensor:
    """The object's visible surface as points: every pixel at least ``min_opacity`` opaque in the depth
    maps from ``cameras``, unprojected along its ray (depth map fusion, as NeRF and 3DGS geometry is
    read). Empty only when nothing is that opaque from any camera."""
    depth, opacity = scene.render_depth(cameras, size)
    cameras = cameras.to(device=depth.device, dtype=depth.dtype)
    origins, directions = cameras.rays(size)
    forward = cameras.rotation()[:, 2]
    distance = depth / (directions * forward[:, None, None, :]).sum(-1)
    points = origins[:, None, None, :] + distance[..., None] * directions
    return points[opacity >= min_opacity]


@torch.no_grad()
def image_metrics(scene: Representation, truth: Tensor, cameras: OrbitCameras, size: int,
                  background: float = 0.0) -> dict[str, float]:
    """PSNR / SSIM of the scene's renders from ``cameras`` against ``truth``, the object's own renders from
    them (e.g. held-out views); images in [0, 1], a colour render averaged to grey against grey truth."""
    rendered = scene.render(cameras, size, background=background).clamp(0, 1).float()
    truth = truth.to(rendered.device)
    if rendered.shape[1] != truth.shape[1]:
        rendered = rendered.mean(dim=1, keepdim=True)
    return {"psnr": float(peak_signal_noise_ratio(rendered, truth, data_range=1.0)),
            "ssim": float(structural_similarity_index_measure(rendered, truth, data_range=1.0))}
