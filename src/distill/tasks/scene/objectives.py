"""Progressive Volume Distillation's objective: a student of any representation matched to a teacher of
any other at the teacher's own ray samples, and (a student that splats) on the teacher's renders of
views it never saw.

PVD (Fang et al., AAAI 2023, "One is All: Bridging the Gap Between Neural Radiance Fields Architectures
with Progressive Volume Distillation") converts between NeRF architectures by matching, at the same
sample points, the pre-activation density — clipped to a range, so empty space (any very negative
value) and solid matter (any very positive one) are not matched beyond what renders can tell — and the
colour, then the colour the student renders along the teacher's samples. Here the teacher's samples are
drawn along the rays of the batch's cameras (stratified, as it would render them) and every
representation answers the same
:meth:`~distill.scenes.Representation.point_values`, so a voxel grid, a coordinate-MLP field and
Gaussians (read as a volume) convert into one another. Colour is matched where it is seen: weighted by
the teacher's compositing weight ``T_k alpha_k`` at each sample (PVD weighs every sample alike; a colour
in empty space renders nothing and would only pull a Gaussian student's colours).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from distill.data.tensors import TensorDictDataset
from distill.errors import ConfigError
from distill.scenes import OrbitCameras, RaySamples, Representation, ViewSet, compositing_weights, to_view_range
from distill.scenes.marching import sample_alphas

#: The pre-activation density range matched (PVD clips its exp-activated density to [-2, 7]). For the
#: softplus densities here: softplus(-5) ≈ 0.007 per unit length is empty (under 2 % opacity across the
#: whole unit cube, 2 wide); at 30, a segment 1/16 of that width is already 85 % opaque.
DEFAULT_CLIP = (-5.0, 30.0)


@dataclass
class ConversionTargets:
    """What the teacher holds at its ray samples: the clipped pre-activation density ``(R, K)``, the channel
    values ``(R, K, C)``, the compositing weights ``(R, K)`` of each sample along its ray, and the colour
    ``(R, C)`` each ray renders (in [0, 1] for colour)."""

    density: Tensor
    values: Tensor
    weights: Tensor
    colours: Tensor


@torch.no_grad()
def teacher_views(teacher: Representation, cameras: OrbitCameras, size: int, background: float = 0.0,
                  chunk: int = 16) -> ViewSet:
    """The teacher's renders from ``cameras``, in [−1, 1] as views are kept: what a student is distilled on."""
    images = torch.cat([teacher.render(cameras[i:i + chunk], size, background=background)
                        for i in range(0, len(cameras), chunk)])
    return ViewSet(to_view_range(images.clamp(0, 1)), cameras, torch.zeros(len(cameras), dtype=torch.long))


def check_clip(clip) -> tuple[float, float]:
    """``clip`` as a ``(low, high)`` pair of numbers with low < high."""
    if (not isinstance(clip, (tuple, list)) or len(clip) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in clip) or clip[0] >= clip[1]):
        raise ConfigError(f"clip must be a (low, high) pair of numbers with low < high, got {clip!r}.")
    return float(clip[0]), float(clip[1])


@torch.no_grad()
def conversion_targets(teacher: Representation, rays: RaySamples, clip=DEFAULT_CLIP,
                       background: float = 0.0) -> ConversionTargets:
    """The teacher's own density and colour at its samples ``rays`` (``R`` rays of ``K`` samples), the density
    clipped to ``clip``, with each sample's compositing weight and each ray's rendered colour."""
    low, high = check_clip(clip)
    logits, values = teacher.point_values(rays.points, rays.directions[:, None, :])
    return ConversionTargets(logits.clamp(low, high), values, *_composite(logits, values, rays, background))


def _composite(logits: Tensor, values: Tensor, rays: RaySamples, background: float) -> tuple[Tensor, Tensor]:
    """Compositing weights ``(R, K)`` and ray colours ``(R, C)`` of values along ``rays``."""
    weights, final = compositing_weights(sample_alphas(logits, rays.delta))
    return weights, (weights[..., None] * values).sum(-2) + final[..., None] * background


def pointwise_losses(student: Representation, rays: RaySamples, targets: ConversionTargets, clip=DEFAULT_CLIP,
                     background: float = 0.0) -> dict[str, Tensor]:
    """The student's squared errors to ``targets`` at the same samples: ``density`` (both clipped), ``colour``
    (weighted by the teacher's compositing weights, normalised by their sum) and ``ray``, the colour the
    student composites along the same samples against the teacher's (in the [−1, 1] range views are kept
    in: PVD renders its student at the teacher's samples)."""
    low, high = check_clip(clip)
    logits, values = student.point_values(rays.points, rays.directions[:, None, :])
    density = (logits.clamp(low, high) - targets.density).pow(2).mean()
    error = (values - targets.values).pow(2).mean(-1)
    colour = (targets.weights * error).sum() / targets.weights.sum().clamp_min(1e-6)
    _, colours = _composite(logits, values, rays, background)
    ray = (to_view_range(colours) - to_view_range(targets.colours)).pow(2).mean()
    return {"density": density, "colour": colour, "ray": ray}


class ConversionObjective(nn.Module):
    """The student matched to the teacher at ``rays`` of the teacher's ray samples per step (``samples``
    along each of the batch's rays from ``cameras`` the teacher never saw, drawn at random):
    ``density_weight`` × the clipped pre-activation density error, ``colour_weight`` × the colour error and
    ``ray_weight`` × the error of the colour composited along those samples (:func:`pointwise_losses`);
    plus ``render_weight`` × the squared error of its whole renders to the teacher's ``views`` from the same
    cameras (renders in [−1, 1]) — what trains a student whose own renderer is not ray marching (Gaussians
    splat). An engine objective batching over ``{"index"}`` rows into the cameras; one parameter group,
    ``scene``."""

    def __init__(self, teacher: Representation, student: Representation, cameras: OrbitCameras, size: int,
                 views: ViewSet | None = None, samples: int = 32, rays: int = 1024, clip=DEFAULT_CLIP,
                 density_weight: float = 0.01, colour_weight: float = 1.0, ray_weight: float = 1.0,
                 render_weight: float = 0.0, background: float = 0.0) -> None:
        super().__init__()
        if teacher.channels != student.channels:
            raise ConfigError(f"the student renders {student.channels} channels and the teacher {teacher.channels}; "
                              "build the student with the teacher's channels.")
        if render_weight and (views is None or len(views.images) != len(cameras)):
            raise ConfigError("render_weight > 0 matches whole renders: pass views, the teacher's renders from the "
                              "cameras (teacher_views).")
        self.teacher, self.student = teacher.requires_grad_(False), student
        self.cameras, self.views, self.size, self.samples, self.rays = cameras, views, size, samples, rays
        self.clip, self.background = check_clip(clip), background
        self.weights = {"render": render_weight, "density": density_weight, "colour": colour_weight,
                        "ray": ray_weight}

    @property
    def model(self) -> Representation:
        """The student (what an engine evaluator scores)."""
        return self.student

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"scene": list(self.student.parameters())}

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        index = batch["index"].cpu()
        cameras = self.cameras[index]
        losses = {}
        if self.weights["render"]:
            images = to_view_range(self.student.render(cameras, self.size, background=self.background))
            losses["render"] = (images - self.views.images[index].to(images)).pow(2).mean()
        if self.weights["density"] or self.weights["colour"] or self.weights["ray"]:
            found = self.teacher.ray_samples(cameras, self.size, self.samples, jitter=True)
            rays = found.rays(torch.randint(found.delta.numel(), (self.rays,)).to(found.delta.device))
            targets = conversion_targets(self.teacher, rays, self.clip, self.background)
            losses |= pointwise_losses(self.student, rays, targets, self.clip, self.background)
        return {"loss": sum(self.weights[name] * value for name, value in losses.items()), **losses}

    def dataset(self) -> TensorDictDataset:
        """Indices into the cameras."""
        return TensorDictDataset(index=torch.arange(len(self.cameras)))
