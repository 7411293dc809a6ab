"""3-D objects lifted out of a 2-D prior: a scene rendered from random cameras and moved by a
guidance under a view-conditioned prior (DreamFusion's loop, Poole et al. 2022).

The objective batches over ``{"index"}`` rows, indices into a fixed, seeded pool of cameras, so a
run is deterministic and resumes exactly (as :class:`distill.scenes.ReconstructionObjective`, the
reference it is measured against, batches over the prior's own training views).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distill.data import TensorDictDataset
from distill.scenes import OrbitCameras, Representation, pose_vector, to_view_range
from distill.tasks.score.objective import GuidedObjective


class SceneObjective(GuidedObjective):
    """Move ``scene`` (any :class:`~distill.scenes.Representation`) by ``guidance``: each step renders
    it from the batch's cameras and hands the renders, in the prior's range [−1, 1] with their pose
    vectors as its conditioning, to the guidance. Parameter groups: ``scene`` and, for VSD, ``fake``
    (its camera-conditioned online score, as ProlificDreamer conditions its LoRA on the camera)."""

    object_group = "scene"

    def __init__(self, guidance, prior: nn.Module, scene: Representation, cameras: OrbitCameras, size: int,
                 total_steps: int, background: float = 0.0) -> None:
        super().__init__(guidance, prior, total_steps)
        self.scene, self.cameras, self.size, self.background = scene, cameras, size, background

    def object_parameters(self) -> list[nn.Parameter]:
        return list(self.scene.parameters())

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        cameras = self.cameras[batch["index"].cpu()]
        images = to_view_range(self.scene.render(cameras, self.size, background=self.background))
        # one object: every view shares particle 0's fixed noise where a guidance keeps one (CSD, DSD)
        particle = torch.zeros(len(images), dtype=torch.long, device=images.device)
        return self.guided_loss(images, pose_vector(cameras).to(images), particle)

    def dataset(self) -> TensorDictDataset:
        """Indices into the camera pool."""
        return TensorDictDataset(index=torch.arange(len(self.cameras)))
