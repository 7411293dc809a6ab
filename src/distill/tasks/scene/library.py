"""The scene methods from Python, around your own representation objects: ``convert``, ``compact`` and
``lift`` train in a plain loop (no run folder) and return the student with its loss history."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from distill.errors import ConfigError, check_count, check_positive
from distill.scenes import GaussianScene, OrbitCameras, ReconstructionObjective, Representation, random_cameras
from distill.taps import parse_tap
from distill.tasks.scene.features import (
    FeatureField,
    FeatureLiftObjective,
    check_geometry,
    tap_features,
    teacher_features,
)
from distill.tasks.scene.methods.compact import Compact, check_gaussians, prune_by_importance
from distill.tasks.scene.methods.convert import Convert
from distill.tasks.scene.objectives import teacher_views


@dataclass
class SceneDistillation:
    """A trained student (a representation, or for ``lift`` a :class:`FeatureField`) and the loss of every step."""

    student: Representation | FeatureField
    losses: list[float] = field(default_factory=list)


def optimise(objective, steps: int, batch_size: int, lr: float, seed: int) -> list[float]:
    """Adam on the objective's ``scene`` group for ``steps`` steps of ``batch_size`` views drawn without
    replacement; seeded (the objective's own draws — jittered samples, rays — come from torch's global
    generator, which is restored afterwards)."""
    check_count("steps", steps)
    check_count("batch_size", batch_size)
    check_positive("lr", lr)
    count = len(objective.dataset())
    if batch_size > count:
        raise ConfigError(f"batch_size ({batch_size}) exceeds the {count} teacher views; lower it or render more.")
    optimizer = torch.optim.Adam(objective.parameter_groups()["scene"], lr=lr)
    generator, losses = torch.Generator().manual_seed(seed), []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(steps):
            loss = objective({"index": torch.randperm(count, generator=generator)[:batch_size]})["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    return losses


def check_representation(name: str, scene) -> Representation:
    if not isinstance(scene, Representation):
        raise ConfigError(f"{name} must be a distill.scenes Representation (GaussianScene, VoxelGrid, NeuralField or "
                          f"your own subclass), got {type(scene).__name__}.")
    return scene


def convert(teacher: Representation, student: Representation, *, steps: int = 300, size: int = 32,
            batch_size: int = 4, lr: float = 0.01, views: int = 256, elevation=(0.0, 30.0), radius: float = 3.0,
            fov: float = 45.0, seed: int = 0, **options) -> SceneDistillation:
    """Convert ``teacher`` into ``student`` (any two representations) by Progressive Volume Distillation:
    the student is trained in place at the teacher's ray samples along the rays of ``views`` random cameras
    (azimuth all round, ``elevation`` in degrees, at ``radius``) and, unless it is ray-marched, on the
    teacher's renders from them; ``options`` are the ``convert`` method's (``density_weight``,
    ``colour_weight``, ``ray_weight``, ``render_weight``, ``clip``, ``samples``, ``rays``)."""
    check_representation("teacher", teacher)
    check_representation("student", student)
    method = Convert(pseudo_views=views, **options)
    cameras = random_cameras(views, torch.Generator().manual_seed(seed + 1), elevation_range=tuple(elevation),
                             radius=radius, fov_degrees=fov)
    objective, _ = method.objective(teacher, student, cameras, size)
    return SceneDistillation(student, optimise(objective, steps, batch_size, lr, seed))


def compact(teacher: GaussianScene, ratio: int = 8, *, steps: int = 300, size: int = 32, batch_size: int = 4,
            lr: float = 0.01, views: int = 256, importance_views: int = 32, elevation=(0.0, 30.0),
            radius: float = 3.0, fov: float = 45.0, seed: int = 0) -> SceneDistillation:
    """``teacher``'s ``1/ratio`` Gaussians of largest accumulated blending weight over ``importance_views``
    random views, then trained on the teacher's renders of ``views`` other random views (a new scene; the
    teacher is not changed)."""
    check_gaussians(check_representation("teacher", teacher))
    Compact(ratio, importance_views, views)
    draw = {"elevation_range": tuple(elevation), "radius": radius, "fov_degrees": fov}
    ranking = random_cameras(importance_views, torch.Generator().manual_seed(seed + 2), **draw)
    student = prune_by_importance(teacher, ranking, size, max(1, len(teacher) // ratio))
    distilled_on = teacher_views(teacher, random_cameras(views, torch.Generator().manual_seed(seed + 1), **draw), size)
    objective = ReconstructionObjective(student, distilled_on, size)
    return SceneDistillation(student, optimise(objective, steps, batch_size, lr, seed))


def lift(teacher: GaussianScene, network: nn.Module, images: Tensor, cameras: OrbitCameras, *, tap: str = "output",
         reduce: int = 1, steps: int = 300, batch_size: int = 4, lr: float = 0.05, seed: int = 0) -> SceneDistillation:
    """Feature 3DGS: the frozen ``network``'s map at ``tap`` (a module path) on ``images`` — views of the
    teacher's object from ``cameras`` — lifted into features on ``teacher``'s Gaussians (kept as they are):
    ``C`` channels, or with ``reduce`` > 1, ``C // reduce`` decoded to ``C`` by a 1×1 convolution. The
    student is a :class:`FeatureField`; ``student.render(cameras, size)`` gives ``(B, C, size, size)`` maps."""
    check_geometry(teacher)
    check_count("reduce", reduce)
    if not isinstance(images, Tensor) or images.dim() != 4 or len(images) != len(cameras):
        raise ConfigError(f"images must be (N, C, H, W), one per camera ({len(cameras)}); got "
                          f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}.")
    spec = parse_tap(tap)
    targets = teacher_features(network, lambda net, x: tap_features(net, spec, x), images, images.shape[-1])
    channels = targets.shape[1]
    field = FeatureField(teacher, max(1, channels // reduce), channels if reduce > 1 else None)
    return SceneDistillation(field, optimise(FeatureLiftObjective(field, cameras, targets), steps, batch_size, lr, seed))
