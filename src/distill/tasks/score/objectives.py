"""Score-distillation objectives: what every one shares (a guidance, a frozen prior, VSD's online score
as its own parameter group, the training progress annealed noise schedules read), and the objects
they move — particles in the prior's data space, and 3-D scenes seen through renders.

Each batches over ``{"index"}`` rows of a :class:`~distill.data.TensorDictDataset` (particle indices, or
indices into a fixed, seeded pool of cameras), so a run is deterministic and resumes exactly; the
object is one parameter group (``particles`` or ``scene``) and VSD's online score another (``fake``),
each with its own learning rate and clipping from ``train.groups``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distill.data import TensorDictDataset
from distill.errors import ConfigError
from distill.scenes import OrbitCameras, Representation, pose_vector, to_view_range


class GuidedObjective(nn.Module):
    """Base of the objectives that move an object by ``guidance`` under ``prior`` for ``total_steps``
    engine steps. Subclasses name their object's parameter group (``object_group``) and call
    :meth:`guided_loss` on what they render."""

    object_group = "object"

    def __init__(self, guidance, prior: nn.Module, total_steps: int) -> None:
        super().__init__()
        if total_steps < 1:
            raise ConfigError(f"total_steps must be >= 1, got {total_steps}.")
        self.guidance, self.prior = guidance, prior.eval().requires_grad_(False)
        self.fake = guidance.fake_network(prior) if hasattr(guidance, "fake_network") else None
        self.total_steps, self.step = total_steps, 0

    def object_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {self.object_group: self.object_parameters()}
        if self.fake is not None:
            groups["fake"] = list(self.fake.parameters())
        return groups

    def after_optimizer_step(self, step: int) -> None:
        self.step = step

    def guided_loss(self, x: Tensor, y: Tensor | None, index: Tensor) -> dict[str, Tensor]:
        """The guidance's losses on ``x`` (conditioned on ``y``; ``index`` names the particles)."""
        extra = (self.fake,) if self.fake is not None else ()
        return self.guidance.loss(x, self.prior, *extra, y=y, progress=self.step / self.total_steps, index=index)


class ParticlesObjective(GuidedObjective):
    """Move ``count`` particles (initialised from ``init``) by ``guidance`` under a frozen ``prior``;
    ``total_steps`` lets annealed noise schedules know the training progress."""

    object_group = "particles"

    def __init__(self, guidance, prior: nn.Module, init: Tensor, total_steps: int, y: Tensor | None = None) -> None:
        super().__init__(guidance, prior, total_steps)
        self.particles = nn.Parameter(init.detach().clone().float())
        self.register_buffer("labels", y if y is not None else torch.zeros(0, dtype=torch.long))

    def object_parameters(self) -> list[nn.Parameter]:
        return [self.particles]

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        index = batch["index"]
        return self.guided_loss(self.particles[index], self.labels[index] if len(self.labels) else None, index)

    @staticmethod
    def dataset(count: int) -> TensorDictDataset:
        """The particle indices the engine batches over."""
        return TensorDictDataset(index=torch.arange(count))


class SceneObjective(GuidedObjective):
    """A 3-D object lifted out of a 2-D prior (DreamFusion's loop, Poole et al. 2022): move ``scene``
    (any :class:`~distill.scenes.Representation`) by ``guidance`` under a view-conditioned prior; each step renders
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
