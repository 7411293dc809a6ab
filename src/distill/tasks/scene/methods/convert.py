"""``convert``: one representation into another by Progressive Volume Distillation (Fang et al., AAAI 2023).

The student (any representation the recipe's ``student`` names) learns from the teacher at the teacher's
own ray samples along the rays of ``pseudo_views`` random cameras it never saw, and, unless it is
ray-marched itself, from the teacher's renders from them (see
:class:`~distill.tasks.scene.objectives.ConversionObjective`). Beside it, with the same budget and the same
starting student, the baseline fits that student to the teacher's own training views. PVD's claim —
conversion reaches a given quality many times faster than training the target from images — is read
from the eval curves: the wall time at which each first reaches the teacher's held-out PSNR less the
margin (the student's time includes rendering the teacher's views where it uses them).

PVD trains in three stages (intermediate features, then density and colour, then rendered colour); with
no shared feature shapes between these representations, both point-wise terms and the rendered term act
from the first step here.
"""

from __future__ import annotations

import time

from distill.errors import ConfigError, check_count
from distill.experiment.runner import Run
from distill.scenes import OrbitCameras, Representation, VolumeField
from distill.tasks.scene.context import SceneContext
from distill.tasks.scene.methods.base import SCENE_METHODS, MethodResult, SceneMethod
from distill.tasks.scene.metrics import EvalCurve
from distill.tasks.scene.objectives import DEFAULT_CLIP, ConversionObjective, check_clip, teacher_views


@SCENE_METHODS.register("convert")
class Convert(SceneMethod):
    """Progressive Volume Distillation (Fang et al., AAAI 2023): a student of another representation
    matched at the teacher's ray samples (clipped pre-activation density, colour, composited colour) and,
    for a student that is not ray-marched, on the teacher's renders of views it never saw; beside the same
    student fitted to the teacher's own training views.

    ``render_weight`` None: 0 for a ray-marched student (voxels, field: it is rendered at the teacher's
    samples instead, and its baseline trains on ``rays`` random pixels of the views per step, as NeRF
    does), 1 for one that is not (Gaussians, whose baseline fits whole views)."""

    def __init__(self, density_weight: float = 0.01, colour_weight: float = 1.0, ray_weight: float = 1.0,
                 render_weight: float | None = None, clip: tuple[float, float] = DEFAULT_CLIP, samples: int = 32,
                 rays: int = 1024, pseudo_views: int = 256) -> None:
        self.weights = {"density_weight": density_weight, "colour_weight": colour_weight, "ray_weight": ray_weight,
                        "render_weight": render_weight}
        for name, value in self.weights.items():
            if value is None and name == "render_weight":
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"convert option {name} must be a number >= 0, got {value!r}.")
        if not any(self.weights.values()):
            raise ConfigError(f"convert needs at least one of {', '.join(self.weights)} above 0.")
        self.clip = check_clip(clip)
        self.samples = check_count("convert option samples", samples)
        self.rays = check_count("convert option rays", rays)
        self.pseudo_views = check_count("convert option pseudo_views", pseudo_views)

    def render_weight(self, student: Representation) -> float:
        """The weight of whole renders for ``student`` (see the class docstring for the default)."""
        given = self.weights["render_weight"]
        return float(given) if given is not None else (0.0 if isinstance(student, VolumeField) else 1.0)

    def check_recipe(self, recipe) -> None:
        if recipe.student is None:
            raise ConfigError("method convert needs a student section: the representation to convert into, e.g. "
                              "student: {kind: field, options: {width: 32, depth: 2}}.")
        if recipe.train.batch_size > self.pseudo_views:
            raise ConfigError(f"train.batch_size ({recipe.train.batch_size}) exceeds convert's pseudo_views "
                              f"({self.pseudo_views}), the cameras each batch is drawn from; lower it.")
        student = recipe.student.build(1, recipe.train.seed)
        if not isinstance(student, VolumeField) and self.render_weight(student) == 0:
            raise ConfigError(f"a {recipe.student.kind} student is not ray-marched: its renders are what it is "
                              "seen by, so convert's render_weight must be above 0 (leave it unset for 1).")

    def objective(self, teacher: Representation, student: Representation, cameras: OrbitCameras, size: int,
                  background: float = 0.0) -> tuple[ConversionObjective, float]:
        """The conversion objective of ``student`` from ``teacher`` over ``cameras``, with this method's
        options, and the seconds spent rendering the teacher's views (when whole renders are matched)."""
        render_weight = self.render_weight(student)
        began = time.perf_counter()
        views = teacher_views(teacher, cameras, size, background) if render_weight else None
        weights = {**self.weights, "render_weight": render_weight}
        objective = ConversionObjective(teacher, student, cameras, size, views, self.samples, self.rays, self.clip,
                                        background=background, **weights)
        return objective, time.perf_counter() - began

    def run(self, context: SceneContext, run: Run) -> MethodResult:
        spec, kind = context.recipe.student, context.recipe.student.kind
        baseline = context.student(spec)
        rays = self.rays if self.render_weight(baseline) == 0 else None
        cost, baseline_curve = context.fit_to_views(run, baseline, "baseline", rays)
        rows = [context.score(f"{kind} from the teacher's {len(context.views.images)} training views", baseline, cost)]
        student = context.student(spec)
        objective, seconds = self.objective(context.teacher, student, context.random_cameras(self.pseudo_views),
                                            context.size, context.background)
        cost, curve = context.train(run, objective, objective.dataset(), "convert", offset=seconds)
        rows.append(context.score(f"{kind} converted (PVD)", student, cost))
        equal = equal_quality(baseline_curve, curve)
        details = {"cameras": self.pseudo_views, "render_weight": objective.weights["render"],
                   "baseline_rays": rays, "teacher_view_seconds": seconds, "equal_quality": equal,
                   "curves": {"baseline": baseline_curve.points, "converted": curve.points}}
        section = ("## At equal quality\n\nBoth students first reached the lower of their final held-out PSNRs, "
                   f"{equal['psnr']:.2f} dB, after {equal['baseline']:.1f} s (fitted to the views) and "
                   f"{equal['converted']:.1f} s (converted): the conversion took {equal['ratio']:.2f}× the baseline's "
                   "time (PVD claims well under 1×).") if equal else ""
        return MethodResult(rows, student, details, [section] if section else [])


def equal_quality(baseline: EvalCurve, converted: EvalCurve) -> dict | None:
    """The seconds each curve takes to first reach the lower of their final PSNRs (a level both reach), and
    the converted student's time as a multiple of the baseline's; None without evaluations."""
    if not baseline.points or not converted.points:
        return None
    level = min(baseline.points[-1]["psnr"], converted.points[-1]["psnr"])
    times = {"baseline": baseline.seconds_to_reach(level), "converted": converted.seconds_to_reach(level)}
    return {"psnr": level, **times, "ratio": times["converted"] / max(times["baseline"], 1e-9)}
