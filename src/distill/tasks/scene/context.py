"""What every row of a scene run shares: the mesh and its views, the teacher, the held-out views and
surface everything is scored against, and the two ways a student learns here — from the training
views themselves, or from a training objective of the method's."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import trimesh
from torch import Tensor

from distill.experiment.runner import Run
from distill.scenes import (
    GaussianScene,
    OrbitCameras,
    ReconstructionObjective,
    Representation,
    ViewSet,
    chamfer_distance,
    image_metrics,
    obtain_views,
    orbit,
    random_cameras,
    render_mesh,
    sample_surface,
    surface_points,
)
from distill.scenes.files import check_scene_file
from distill.tasks.scene.metrics import EvalCurve, SceneRow, render_seconds
from distill.tasks.scene.objectives import teacher_views
from distill.tasks.scene.recipe import RepresentationSpec, SceneRecipe
from distill.tasks.scene.teacher import obtain_teacher

TURNTABLE = 8  # views at 15° elevation in each row of the figure


@dataclass
class SceneContext:
    """The mesh, its training views, the frozen teacher and what every row is scored against: the mesh's
    and the teacher's renders from the held-out cameras, and points on the true surface."""

    recipe: SceneRecipe
    mesh: trimesh.Trimesh
    name: str
    views: ViewSet
    views_info: dict
    teacher: Representation
    teacher_info: dict
    held: OrbitCameras
    truth: Tensor          # the mesh's renders from the held-out cameras, [0, 1]
    teacher_truth: Tensor  # the teacher's, [0, 1]
    surface: Tensor
    teacher_psnr: float    # the teacher's held-out PSNR against the mesh
    background: float = 0.0

    @property
    def size(self) -> int:
        return self.recipe.views.size

    def student(self, spec: RepresentationSpec) -> Representation:
        """A fresh student of ``spec``, seeded by the training seed, with the teacher's channels."""
        return spec.build(self.teacher.channels, self.recipe.train.seed)

    def score(self, label: str, scene: Representation, cost: dict | None = None, teacher: bool = False) -> SceneRow:
        """Held-out PSNR / SSIM against the mesh and (but for the teacher's own row) against the teacher,
        Chamfer distance of the visible surface, parameter count and render time; with a turntable."""
        metrics = {"representation": type(scene).__name__, "params": scene.parameter_count(),
                   "gaussians": len(scene) if isinstance(scene, GaussianScene) else None,  # only splats count them
                   **image_metrics(scene, self.truth, self.held, self.size, self.background)}
        if not teacher:
            against = image_metrics(scene, self.teacher_truth, self.held, self.size, self.background)
            metrics |= {"psnr_teacher": against["psnr"], "ssim_teacher": against["ssim"]}
        points = surface_points(scene, self.held, self.size).float()
        metrics["chamfer"] = chamfer_distance(points, self.surface) if len(points) else None
        metrics["render_ms"] = 1000 * render_seconds(scene, self.held, self.size, self.recipe.evaluate.render_repeats)
        with torch.no_grad():
            turntable = scene.render(orbit(TURNTABLE, elevation=15.0, radius=self.recipe.views.radius,
                                           fov_degrees=self.recipe.views.fov), self.size, background=self.background)
        return SceneRow(label, metrics, turntable.clamp(0, 1).mean(dim=1, keepdim=True).float(), cost or {})

    def curve(self, offset: float = 0.0) -> EvalCurve:
        """A fresh eval curve of held-out PSNR against the mesh, ``offset`` seconds in (see :class:`EvalCurve`)."""
        return EvalCurve(self.truth, self.held, self.size, self.background, offset)

    def train(self, run: Run, objective, dataset, label: str, offset: float = 0.0) -> tuple[dict, EvalCurve]:
        """Train ``objective`` (its ``model`` is the student) with the recipe's budget as stage ``label``; the
        cost (wall seconds, and those to the teacher's PSNR less the margin; evaluation excluded from both)
        and the eval curve."""
        curve = self.curve(offset)
        handle = curve.watch(objective)
        try:
            result = run.train(objective, dataset, self.recipe.train, label, evaluator=curve)
        finally:
            handle.remove()
        target = self.teacher_psnr - self.recipe.evaluate.margin_db
        seconds = offset + result.seconds - curve.evaluation_seconds
        return {"seconds": seconds, "seconds_to_target": curve.seconds_to_reach(target)}, curve

    def fit_to_views(self, run: Run, scene: Representation, label: str,
                     rays: int | None = None) -> tuple[dict, EvalCurve]:
        """``scene`` fitted to the teacher's own training views (photometric loss, the recipe's budget; on
        ``rays`` random pixels per step when given, else whole views)."""
        objective = ReconstructionObjective(scene, self.views, self.size, self.background, rays)
        return self.train(run, objective, objective.dataset(), label)

    def random_cameras(self, count: int, offset: int = 1) -> OrbitCameras:
        """``count`` random cameras over the training views' elevations (seeded by the training seed plus
        ``offset``): views the teacher never saw."""
        spec = self.recipe.views
        return random_cameras(count, torch.Generator().manual_seed(self.recipe.train.seed + offset),
                              elevation_range=spec.elevation, radius=spec.radius, fov_degrees=spec.fov)

    def teacher_views(self, count: int) -> tuple[ViewSet, float]:
        """The teacher's renders, in [−1, 1], from ``count`` :meth:`random_cameras`, and the seconds they took."""
        cameras = self.random_cameras(count)
        began = time.perf_counter()
        views = teacher_views(self.teacher, cameras, self.size, self.background)
        return views, time.perf_counter() - began

    def turntables(self) -> list[SceneRow]:
        """The true mesh's turntable, for the figure."""
        cameras = orbit(TURNTABLE, elevation=15.0, radius=self.recipe.views.radius, fov_degrees=self.recipe.views.fov)
        return [SceneRow(f"true mesh: {self.name}", {}, render_mesh(self.mesh, cameras, self.size, self.background))]


def prepare_scene(recipe: SceneRecipe, run: Run) -> SceneContext:
    """Read the mesh and check the teacher's file first (a bad one stops the run before any work), then
    the training views (cached), the teacher (fitted and cached, or read) and the held-out references."""
    spec = recipe.views
    [mesh] = spec.load_meshes()
    if recipe.teacher.file is not None:
        check_scene_file(recipe.teacher.file)
    views, views_info = obtain_views([mesh], spec.count, spec.size, spec.seed, spec.elevation, spec.radius, spec.fov)
    teacher, teacher_info = obtain_teacher(recipe.teacher, views, views_info["identity"], spec.size, run)
    held = spec.held_out_cameras()
    truth = render_mesh(mesh, held, spec.size).float()
    with torch.no_grad():
        teacher_truth = teacher.render(held, spec.size).clamp(0, 1).float()
    return SceneContext(recipe, mesh, Path(spec.meshes[0]).stem, views, views_info, teacher, teacher_info, held,
                        truth, teacher_truth, sample_surface(mesh, spec.surface_points, spec.seed),
                        image_metrics(teacher, truth, held, spec.size)["psnr"])
