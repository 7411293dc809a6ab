"""Direct photometric reconstruction: fit a representation to views of an object by their pixels."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distill.data.tensors import TensorDictDataset
from distill.errors import ConfigError, check_count
from distill.scenes.marching import VolumeField, render_rays
from distill.scenes.representation import Representation
from distill.scenes.views import ViewSet, to_view_range


class ReconstructionObjective(nn.Module):
    """The mean squared error between the scene's renders and ``views`` from their cameras (the
    photometric loss of NeRF, Mildenhall et al. 2020): an engine objective batching over
    ``{"index"}`` rows into the views, one parameter group ``scene``. With ``rays``, a volume
    (:class:`~distill.scenes.marching.VolumeField`) renders only that many pixels drawn at random from the
    batch's views, along stratified-jittered samples, as NeRF trains; otherwise whole images."""

    def __init__(self, scene: Representation, views: ViewSet, size: int, background: float = 0.0,
                 rays: int | None = None) -> None:
        super().__init__()
        if rays is not None:
            check_count("rays", rays)
            if not isinstance(scene, VolumeField):
                raise ConfigError(f"rays (random pixels per step) trains a ray-marched volume; a "
                                  f"{type(scene).__name__} renders whole images: leave rays unset.")
        self.scene, self.views, self.size, self.background, self.rays = scene, views, size, background, rays

    @property
    def model(self) -> Representation:
        """The representation being fitted (what an engine evaluator scores)."""
        return self.scene

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"scene": list(self.scene.parameters())}

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        index = batch["index"].cpu()
        cameras = self.views.cameras[index]
        target = self.views.images[index]
        if self.rays is None:
            images = to_view_range(self.scene.render(cameras, self.size, background=self.background))
            return {"loss": (images - target.to(images)).pow(2).mean()}
        found = self.scene.ray_samples(cameras, self.size, jitter=True)
        pick = torch.randint(found.delta.numel(), (self.rays,))
        colours = to_view_range(render_rays(self.scene, found.rays(pick.to(found.delta.device)), self.background))
        pixels = target.permute(0, 2, 3, 1).reshape(-1, target.shape[1])[pick]
        return {"loss": (colours - pixels.to(colours)).pow(2).mean()}

    def dataset(self) -> TensorDictDataset:
        """Indices into the views."""
        return TensorDictDataset(index=torch.arange(len(self.views.images)))
