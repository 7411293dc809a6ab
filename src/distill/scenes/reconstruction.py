"""Direct photometric reconstruction: fit a representation to views of an object by their pixels."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distill.data.tensors import TensorDictDataset
from distill.scenes.representation import Representation
from distill.scenes.views import ViewSet, to_view_range


class ReconstructionObjective(nn.Module):
    """The mean squared error between the scene's renders and ``views`` from their cameras (the
    photometric loss of NeRF, Mildenhall et al. 2020): an engine objective batching over
    ``{"index"}`` rows into the views, one parameter group ``scene``."""

    def __init__(self, scene: Representation, views: ViewSet, size: int, background: float = 0.0) -> None:
        super().__init__()
        self.scene, self.views, self.size, self.background = scene, views, size, background

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"scene": list(self.scene.parameters())}

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        index = batch["index"].cpu()
        cameras = self.views.cameras[index]
        images = to_view_range(self.scene.render(cameras, self.size, background=self.background))
        return {"loss": (images - self.views.images[index].to(images)).pow(2).mean()}

    def dataset(self) -> TensorDictDataset:
        """Indices into the views."""
        return TensorDictDataset(index=torch.arange(len(self.views.images)))
