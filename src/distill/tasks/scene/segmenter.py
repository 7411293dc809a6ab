"""The frozen 2-D teacher of a feature-field run: a small part-segmentation network trained by the run
on renders of the mesh, labelled with the mesh's own parts (:mod:`distill.scenes.parts`), and cached.

It is trained on its own views (drawn apart from the scene's training views, as a 2-D network is
trained on its own data) for a short budget, so it is imperfect and, with a receptive field of a few
pixels, not consistent from one view to the next: the setting in which Feature 3DGS (Zhou et al., CVPR
2024) claims lifting its outputs into one 3-D field fuses the views into something at least as good.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from distill.data.tensors import TensorDictDataset
from distill.engine.cache import cached_tensors, fit_or_load
from distill.engine.config import TRAIN_ONLY, StrictModel, TrainConfig
from distill.errors import DistillError
from distill.experiment.runner import Run
from distill.scenes import ViewSet, mesh_fingerprint, obtain_views
from distill.scenes.parts import part_maps
from distill.scenes.recipe import ViewsSpec
from distill.taps import TapSpec, parse_tap
from distill.tasks.scene.features import tap_features

#: how far the segmenter's own views are seeded from the scene's (they must not be the same views)
SEED_OFFSET = 1000


class PartSegmenter(nn.Module):
    """A tiny fully convolutional segmenter of grey images in [−1, 1]: the image and its pixel coordinates
    in [−1, 1] (CoordConv, Liu et al. 2018: where a pixel is in the frame says much about which part it
    shows) through ``features`` — ``depth`` 3×3 convolutions of ``width`` channels with ReLU, dilated 1, 2,
    4, ... so the receptive field spans ``2^(depth+1) − 1`` pixels — then ``head``, a 1×1 convolution to
    ``classes`` logits. Its module paths (``features``, ``features.0``, ``head``, ``output``) are what a run taps."""

    def __init__(self, classes: int, width: int = 16, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Conv2d(3 if i == 0 else width, width, 3, padding=2 ** i, dilation=2 ** i), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, images: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        v, u = torch.meshgrid(torch.linspace(-1, 1, height, device=images.device, dtype=images.dtype),
                              torch.linspace(-1, 1, width, device=images.device, dtype=images.dtype), indexing="ij")
        where = torch.stack([u, v]).expand(len(images), 2, height, width)
        return self.head(self.features(torch.cat([images, where], dim=1)))


class SegmenterSpec(StrictModel):
    """The 2-D teacher: a :class:`PartSegmenter` of ``width`` × ``depth``, trained with ``train`` on ``views``
    renders of the mesh from random cameras of its own (cached by content)."""

    width: PositiveInt = 16
    depth: PositiveInt = 4
    views: PositiveInt = 48
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(steps=400, batch_size=8, lr=0.01))

    def build(self, classes: int) -> PartSegmenter:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.train.seed)
            return PartSegmenter(classes, self.width, self.depth)


class SegmentationObjective(nn.Module):
    """Per-pixel cross-entropy of ``network``'s logits on ``images`` to ``labels``: an engine objective over
    ``{"index"}`` rows, one parameter group ``network``."""

    def __init__(self, network: PartSegmenter, images: Tensor, labels: Tensor) -> None:
        super().__init__()
        self.network, self.images, self.labels = network, images, labels

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"network": list(self.network.parameters())}

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        index = batch["index"].cpu()
        logits = self.network(self.images[index])
        return {"loss": F.cross_entropy(logits, self.labels[index].to(logits.device))}

    def dataset(self) -> TensorDictDataset:
        return TensorDictDataset(index=torch.arange(len(self.images)))


def labelled_views(mesh, parts: Tensor, spec: ViewsSpec, count: int) -> tuple[ViewSet, Tensor, dict]:
    """``count`` renders of ``mesh`` from the segmenter's own random cameras (seeded apart from the scene's
    views) and their part maps ``(count, H, W)``, both cached by content."""
    views, info = obtain_views([mesh], count, spec.size, spec.seed + SEED_OFFSET, spec.elevation, spec.radius,
                               spec.fov)
    identity = {"kind": "part-maps", "views": info["identity"], "parts": mesh_fingerprint(mesh),
                "labels": parts.tolist()}
    labels = cached_tensors("part-maps", identity, lambda: ({"labels": part_maps(mesh, parts, views.cameras,
                                                                             spec.size)}, {}))[0]["labels"]
    return views, labels, {"views": info["identity"], "labels": identity}


def obtain_segmenter(spec: SegmenterSpec, mesh, parts: Tensor, views_spec: ViewsSpec,
                     run: Run) -> tuple[PartSegmenter, dict]:
    """The frozen segmenter of ``parts`` (one label per face, 1..k; 0 is the background), trained on its own
    labelled views in ``run`` or loaded from the cache, and its facts."""
    classes = int(parts.max()) + 1
    network = spec.build(classes)
    views, labels, identity = labelled_views(mesh, parts, views_spec, spec.views)
    objective = SegmentationObjective(network, views.images, labels)

    def fit() -> dict:
        began = time.perf_counter()
        result = run.train(objective, objective.dataset(), spec.train, "segmenter")
        return {"seconds": time.perf_counter() - began, "steps": result.steps}

    key = {"kind": "part-segmenter", "classes": classes, "width": spec.width, "depth": spec.depth, **identity,
           "train": spec.train.model_dump(mode="json", exclude=TRAIN_ONLY)}
    info, cached = fit_or_load(network, key, fit)
    return network.eval().requires_grad_(False), {**info, "cached": cached, "views": spec.views,
                                                  "classes": classes}


def check_tap(network: nn.Module, tap: str, size: int = 8) -> TapSpec:
    """``tap`` parsed and tried on one blank image: refused, before any work, unless it names a module of
    ``network`` whose value is a feature map ``(B, C, H, W)``."""
    spec = parse_tap(tap)
    with torch.no_grad():
        found = tap_features(network, spec, torch.zeros(1, 1, size, size))
    if found.dim() != 4:
        raise DistillError(f"tap {tap!r} of the 2-D teacher gives a tensor of shape {tuple(found.shape)}; a feature "
                           "field lifts per-pixel feature maps (B, C, H, W): tap a convolution, e.g. 'features' "
                           "or 'output'.")
    return spec
