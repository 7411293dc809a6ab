"""3-D objects lifted out of a 2-D prior: a scene rendered from random cameras and moved by a
guidance under a view-conditioned prior (DreamFusion's loop, Poole et al. 2022), the direct
photometric reconstruction it is measured against, and the scene's metrics.

Both objectives batch over ``{"index"}`` rows: indices into a fixed, seeded pool of cameras
(guidance) or into the prior's own training views (reconstruction), so a run is deterministic
and resumes exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from distill.data import TensorDictDataset
from distill.tasks.score.objective import GuidedObjective
from distill.tasks.score.render import OrbitCameras, pose_vector
from distill.tasks.score.views import ViewSet


def to_prior_range(images: Tensor) -> Tensor:
    """Renders in [0, 1] as the prior sees images: [−1, 1]."""
    return 2 * images - 1


class SceneObjective(GuidedObjective):
    """Move ``scene`` (a :class:`~distill.tasks.score.render.GaussianScene` or
    :class:`~distill.tasks.score.render.VoxelGrid`) by ``guidance``: each step renders it from the
    batch's cameras and hands the renders, with their pose vectors as the prior's conditioning, to
    the guidance. Parameter groups: ``scene`` and, for VSD, ``fake`` (its camera-conditioned online
    score, as ProlificDreamer conditions its LoRA on the camera)."""

    object_group = "scene"

    def __init__(self, guidance, prior: nn.Module, scene: nn.Module, cameras: OrbitCameras, size: int,
                 total_steps: int, background: float = 0.0) -> None:
        super().__init__(guidance, prior, total_steps)
        self.scene, self.cameras, self.size, self.background = scene, cameras, size, background

    def object_parameters(self) -> list[nn.Parameter]:
        return list(self.scene.parameters())

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        cameras = self.cameras[batch["index"].cpu()]
        images = to_prior_range(self.scene.render(cameras, self.size, background=self.background))
        # one object: every view shares particle 0's fixed noise where a guidance keeps one (CSD, DSD)
        particle = torch.zeros(len(images), dtype=torch.long, device=images.device)
        return self.guided_loss(images, pose_vector(cameras).to(images), particle)

    def dataset(self) -> TensorDictDataset:
        """Indices into the camera pool."""
        return TensorDictDataset(index=torch.arange(len(self.cameras)))


class ReconstructionObjective(nn.Module):
    """Direct photometric reconstruction: the mean squared error between the scene's renders and the
    prior's own training views from their cameras — the upper bound a guidance is measured against,
    since it sees the views the prior only learned from."""

    def __init__(self, scene: nn.Module, views: ViewSet, size: int, background: float = 0.0) -> None:
        super().__init__()
        self.scene, self.views, self.size, self.background = scene, views, size, background

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"scene": list(self.scene.parameters())}

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        index = batch["index"].cpu()
        cameras = self.views.cameras[index]
        images = to_prior_range(self.scene.render(cameras, self.size, background=self.background))
        return {"loss": (images - self.views.images[index].to(images)).pow(2).mean()}

    def dataset(self) -> TensorDictDataset:
        return TensorDictDataset(index=torch.arange(len(self.views.images)))


@torch.no_grad()
def surface_points(scene: nn.Module, cameras: OrbitCameras, size: int, min_opacity: float = 0.5) -> Tensor:
    """The object's visible surface as points: every pixel at least ``min_opacity`` opaque in the depth
    maps from ``cameras``, unprojected along its ray (depth map fusion, as NeRF and 3DGS geometry is
    read). Empty only when nothing is that opaque from any camera."""
    depth, opacity = scene.render_depth(cameras, size)
    origins, directions = cameras.to(depth.dtype).rays(size)
    forward = cameras.to(depth.dtype).rotation()[:, 2]
    distance = depth / (directions * forward[:, None, None, :]).sum(-1)
    points = origins[:, None, None, :] + distance[..., None] * directions
    return points[opacity >= min_opacity]


@torch.no_grad()
def image_metrics(scene: nn.Module, truth: Tensor, cameras: OrbitCameras, size: int,
                  background: float = 0.0) -> dict[str, float]:
    """PSNR / SSIM of the scene's renders from ``cameras`` against ``truth``, the mesh's own renders from
    them (held-out views, never seen by the prior); images in [0, 1]."""
    rendered = scene.render(cameras, size, background=background).clamp(0, 1).float()
    if rendered.shape[1] != truth.shape[1]:
        rendered = rendered.mean(dim=1, keepdim=True)
    return {"psnr": float(peak_signal_noise_ratio(rendered, truth, data_range=1.0)),
            "ssim": float(structural_similarity_index_measure(rendered, truth, data_range=1.0))}
