"""Feature fields (Feature 3DGS, Zhou et al., CVPR 2024): a frozen 2-D network's per-pixel features lifted
into per-Gaussian feature vectors, rendered by the same alpha compositing as colour.

A :class:`FeatureField` keeps a scene's Gaussians (their geometry frozen: it is the scene teacher's) and
gives each a vector of ``C`` raw features, composited front to back exactly as colours are
(:class:`~distill.scenes.GaussianScene` with ``features=True``). Feature 3DGS's speed-up renders ``C / r``
channels and decodes them to ``C`` with a 1×1 convolution. :class:`FeatureLiftObjective` fits the
features to the network's outputs on the training views with an L1 loss, as Feature 3DGS does (its
geometry and colour are trained jointly there; here geometry comes from the teacher and only the
features and the decoder learn).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.data.tensors import TensorDictDataset
from distill.errors import ConfigError, check_count
from distill.scenes import GaussianScene, OrbitCameras
from distill.taps import TapRecorder, TapSpec


def check_geometry(scene) -> GaussianScene:
    """``scene``, refused unless it is made of Gaussians (what a feature field puts its features on)."""
    if not isinstance(scene, GaussianScene):
        raise ConfigError(f"a feature field lifts features onto Gaussians; got a {type(scene).__name__} "
                          "(convert it into Gaussians first: distill.tasks.scene.convert).")
    return scene


class FeatureField(nn.Module):
    """``geometry``'s Gaussians, copied and frozen, with ``channels`` features each (0 to start) and one learnt
    background feature vector, composited where no Gaussian covers a pixel (a 2-D network has outputs there
    too); ``decoded``: a 1×1 convolution maps the rendered ``channels`` to ``decoded`` (Feature 3DGS's
    speed-up), None: the rendered features are the output."""

    def __init__(self, geometry: GaussianScene, channels: int, decoded: int | None = None) -> None:
        super().__init__()
        check_geometry(geometry)
        check_count("a feature field's channels", channels)
        features = torch.zeros(len(geometry), channels, dtype=geometry.positions.dtype)
        self.scene = GaussianScene(geometry.positions, geometry.log_scales, geometry.opacity_logits, features,
                                   geometry.rotations, features=True)
        for parameter in (self.scene.positions, self.scene.log_scales, self.scene.rotations, self.scene.opacity_logits):
            parameter.requires_grad_(False)
        self.background = nn.Parameter(torch.zeros(channels, dtype=geometry.positions.dtype))
        self.decoder = None if decoded is None else nn.Conv2d(channels, check_count("decoded", decoded), 1)

    @property
    def channels(self) -> int:
        """How many channels :meth:`render` returns (after the decoder)."""
        return self.scene.channels if self.decoder is None else self.decoder.out_channels

    def render(self, cameras: OrbitCameras, size) -> Tensor:
        """Feature maps ``(B, C, H, W)``: the Gaussians' features composited over the background features, then
        decoded when there is a decoder."""
        features = self.scene.render(cameras, size, background=self.background)
        return features if self.decoder is None else self.decoder(features)

    def trainable(self) -> list[nn.Parameter]:
        """The features, the background and the decoder (the geometry stays the teacher's)."""
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_count(self) -> int:
        """How many numbers the field adds to the geometry: the features, the background and the decoder."""
        return sum(p.numel() for p in self.trainable())


def tap_features(network: nn.Module, spec: TapSpec, images: Tensor) -> Tensor:
    """The value at ``spec`` when ``network`` runs on ``images`` (the hook is removed afterwards)."""
    recorder = TapRecorder(network, [spec], "2-D teacher")
    try:
        network(images)
        return recorder.get(spec)
    finally:
        recorder.remove()


@torch.no_grad()
def teacher_features(network: nn.Module, read, images: Tensor, size: int, chunk: int = 16) -> Tensor:
    """``read(network, images)`` (e.g. a tap) on ``images`` in chunks, resized to ``size`` pixels bilinearly
    where the network's map is of another size: the targets ``(N, C, size, size)``."""
    maps = torch.cat([read(network, images[i:i + chunk]) for i in range(0, len(images), chunk)])
    if maps.dim() != 4:
        raise ConfigError(f"the 2-D network's features have shape {tuple(maps.shape)}; a feature field lifts "
                          "per-pixel maps (N, C, H, W).")
    if maps.shape[-2:] != (size, size):
        maps = F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)
    return maps.float()


class FeatureLiftObjective(nn.Module):
    """The mean absolute error between ``field``'s renders from ``cameras`` and the 2-D network's ``targets``
    ``(N, C, H, W)`` there (Feature 3DGS's feature loss): an engine objective over ``{"index"}`` rows, one
    parameter group ``scene`` (the features and the decoder)."""

    def __init__(self, field: FeatureField, cameras: OrbitCameras, targets: Tensor) -> None:
        super().__init__()
        if targets.dim() != 4 or len(targets) != len(cameras) or targets.shape[1] != field.channels:
            raise ConfigError(f"targets must be ({len(cameras)}, {field.channels}, H, W), one map per camera with the "
                              f"field's channels; got {tuple(targets.shape)}.")
        self.field, self.cameras, self.targets = field, cameras, targets
        self.size = (targets.shape[-2], targets.shape[-1])

    @property
    def model(self) -> FeatureField:
        return self.field

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"scene": self.field.trainable()}

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        index = batch["index"].cpu()
        rendered = self.field.render(self.cameras[index], self.size)
        return {"loss": (rendered - self.targets[index].to(rendered)).abs().mean()}

    def dataset(self) -> TensorDictDataset:
        """Indices into the cameras."""
        return TensorDictDataset(index=torch.arange(len(self.cameras)))


def logits_reader(network: nn.Module, spec: TapSpec):
    """How a map tapped at ``spec`` becomes part logits, for a network with a ``head`` of 1×1 logits (as
    :class:`~distill.tasks.scene.segmenter.PartSegmenter`): as it is for the output (``output`` or ``head``),
    through ``network.head`` for the head's input (``features`` or ``head:input``); None for any other tap,
    which is scored by feature cosine alone."""
    if spec.index is not None:
        return None
    if (spec.path, spec.io) in (("", "output"), ("head", "output")):
        return lambda maps: maps
    if (spec.path, spec.io) in (("features", "output"), ("head", "input")) and hasattr(network, "head"):
        return network.head
    return None
