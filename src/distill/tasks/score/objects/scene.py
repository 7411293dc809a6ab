"""The ``scene`` object kind: a 3-D object (any registered representation) seen only through renders —
mesh renders (cached), the view prior, and the two references measured in the same run — the initial state and direct reconstruction from
the prior's own training views.

With several meshes the prior is trained on all their renders with no object label: the result is
scored against the mesh it is closest to (Chamfer), and ``object`` names that mesh — the mode a
mode-seeking guidance settled on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from distill.diffusion.process import build_process
from distill.diffusion.teacher import build_diffusion_model, obtain_diffusion_model
from distill.experiment.runner import Run
from distill.models.base import frozen
from distill.scenes import (
    REPRESENTATIONS,
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
from distill.tasks.score.metrics import ScoreRow, peak_memory_mb
from distill.tasks.score.objectives import SceneObjective
from distill.tasks.score.objects.base import OBJECT_KINDS, ObjectKind
from distill.tasks.score.recipe import SceneSpec, ScoreRecipe
from distill.tasks.score.report import SCENE_NOTES, plot_turntables
from distill.tasks.score.view_prior import POSE_DIM, ViewConditionedExactDenoiser

CAMERA_POOL = 4096


def initial_scene(spec: SceneSpec, seed: int) -> Representation:
    """The object before any update, seeded: the registered representation ``spec.kind`` with its options."""
    options = {"gaussians": {"n": spec.count, "radius": spec.init_radius,
                             "generator": torch.Generator().manual_seed(seed)},
               "voxels": {"resolution": spec.resolution}}[spec.kind]
    return REPRESENTATIONS.build(spec.kind, channels=spec.channels, **options)


def obtain_view_prior(recipe: ScoreRecipe, views: ViewSet, identity: dict, run: Run | None):
    """The exact view prior, or a view-conditioned network (untrained when ``run`` is None, else cached
    or trained on the renders, their pose vectors as conditioning)."""
    spec = recipe.prior
    if spec.kind == "exact":
        return ViewConditionedExactDenoiser(views.images, views.poses, build_process(spec.process),
                                            spec.kappa_degrees), {}
    spec = spec.model_copy(update={"options": {**spec.options, "pose_dim": POSE_DIM}})
    if run is None:
        return build_diffusion_model(spec, views.splits()), {}
    return obtain_diffusion_model(identity, spec, views.splits(), run, label="prior")


@dataclass
class SceneContext:
    """Everything a 3-D run shares between its rows: the meshes, their renders, the frozen prior, the
    camera pool of the guidance and the held-out cameras and surface points it is scored by."""

    recipe: ScoreRecipe
    meshes: list
    names: list[str]
    views: ViewSet
    prior: nn.Module
    prior_info: dict
    views_info: dict
    cameras: OrbitCameras
    surfaces: list[Tensor]
    held: OrbitCameras
    held_truth: list[Tensor]  # each mesh's own renders from the held-out cameras

    @property
    def size(self) -> int:
        return self.recipe.views.size

    @property
    def background(self) -> float:
        return self.recipe.object.background

    def initial(self, seed: int) -> Representation:
        return initial_scene(self.recipe.object, seed)

    def score(self, label: str, scene: Representation, cost: dict | None = None) -> ScoreRow:
        """Metrics against the mesh the scene is nearest to (Chamfer), which mesh that is, and a turntable."""
        points = surface_points(scene, self.held, self.size).float()
        points = points if len(points) else torch.ones(1, 3)  # nothing opaque: a far corner of the box
        chamfers = [chamfer_distance(points, surface) for surface in self.surfaces]
        nearest = min(range(len(chamfers)), key=chamfers.__getitem__)
        metrics = {"chamfer": chamfers[nearest],
                   **image_metrics(scene, self.held_truth[nearest], self.held, self.size, self.background)}
        with torch.no_grad():
            turntable = scene.render(orbit(8, elevation=15.0), self.size, background=self.background).clamp(0, 1)
        return ScoreRow(label, {**metrics, "object": self.names[nearest]}, turntable.mean(dim=1, keepdim=True),
                        cost or {})

    def reconstruct(self, run: Run, seed: int, mesh: int | None = None) -> ScoreRow:
        """Direct photometric reconstruction from the prior's training views (of mesh number ``mesh``
        only, when several meshes share the prior), scored."""
        views = self.views if mesh is None else self.views.subset(self.views.mesh_index == mesh)
        objective = ReconstructionObjective(self.initial(seed), views, self.size, self.background)
        config = self.recipe.train.model_copy(update={"seed": seed, "groups": {
            k: v for k, v in self.recipe.train.groups.items() if k == "scene"}})
        result = run.train(objective, objective.dataset(), config,
                           "reconstruction" if mesh is None else f"reconstruction_{self.names[mesh]}")
        return self.score("reconstruction (prior's training views)", objective.scene, {"seconds": result.seconds})

    def distil(self, run: Run, guidance, label: str, seed: int, train=None) -> tuple[ScoreRow, Representation]:
        """The guidance's object from the initial state of ``seed``, scored with its cost; ``train``
        replaces the recipe's training settings (e.g. a benchmark giving VSD its ``fake`` group)."""
        config = (train or self.recipe.train).model_copy(update={"seed": seed})
        objective = SceneObjective(guidance, self.prior, self.initial(seed), self.cameras, self.size,
                                   config.steps, self.background)
        result = run.train(objective, objective.dataset(), config, label)
        cost = {"seconds": result.seconds, "evaluations_per_step": guidance.evaluations_per_step(self.prior, None),
                "peak_memory_mb": peak_memory_mb()}
        return self.score(label, objective.scene, cost), objective.scene

    def turntables(self) -> list[ScoreRow]:
        """Each true mesh's turntable, for the figure."""
        return [ScoreRow(f"true mesh: {name}", {}, render_mesh(mesh, orbit(8, elevation=15.0), self.size,
                                                              self.background))
                for name, mesh in zip(self.names, self.meshes)]


def prepare_scene(recipe: ScoreRecipe, run: Run) -> SceneContext:
    """Render the meshes (cached), check the guidance against an untrained prior, then obtain the prior."""
    spec, views_spec = recipe.object, recipe.views
    meshes = views_spec.load_meshes()
    views, views_info = obtain_views(meshes, views_spec.count, views_spec.size, views_spec.seed,
                                     views_spec.elevation, views_spec.radius, views_spec.fov)
    cameras = random_cameras(CAMERA_POOL, torch.Generator().manual_seed(recipe.train.seed + 1),
                             elevation_range=views_spec.elevation, radius=views_spec.radius,
                             fov_degrees=views_spec.fov)
    untrained, _ = obtain_view_prior(recipe, views, views_info["identity"], None)
    SceneObjective(recipe.guidance.build(), untrained, initial_scene(spec, recipe.train.seed), cameras,
                   views_spec.size, recipe.train.steps)
    prior, prior_info = obtain_view_prior(recipe, views, views_info["identity"], run)
    surfaces = [sample_surface(m, views_spec.surface_points, views_spec.seed) for m in meshes]
    held = views_spec.held_out_cameras()
    truth = [render_mesh(m, held, views_spec.size, spec.background).float() for m in meshes]
    return SceneContext(recipe, meshes, [Path(name).stem for name in views_spec.meshes], views, frozen(prior),
                        prior_info, views_info, cameras, surfaces, held, truth)


@OBJECT_KINDS.register("scene")
class SceneKind(ObjectKind):
    """The scene beside the initial state and direct reconstruction, each row carrying a turntable of 8
    views; written as ``scene.ply`` (Gaussians) or ``scene.npz`` (voxels). With several meshes the result
    is scored against the nearest, and ``object`` names it."""

    notes = tuple(SCENE_NOTES)

    def prepare(self, recipe: ScoreRecipe, run: Run) -> SceneContext:
        return prepare_scene(recipe, run)

    def references(self, context: SceneContext, run: Run) -> list[ScoreRow]:
        seed = context.recipe.train.seed
        return [context.score("initial state", context.initial(seed)), context.reconstruct(run, seed)]

    def distil(self, context: SceneContext, run: Run, guidance, label: str) -> tuple[ScoreRow, Representation]:
        return context.distil(run, guidance, label, context.recipe.train.seed)

    def save(self, context: SceneContext, made: Representation, folder: Path) -> Path:
        return made.save(folder / f"scene{made.suffix}")

    def details(self, context: SceneContext, row: ScoreRow) -> dict:
        return {"views": {"seconds": context.views_info.get("seconds")}, "meshes": context.names,
                "held_out_cameras": context.recipe.views.held_out}

    def figure(self, context: SceneContext, rows: list[ScoreRow], folder: Path) -> tuple[str, Path | None]:
        return ("Turntables (8 views at 15° elevation): the true meshes, then each result",
                plot_turntables(context.turntables() + rows, folder / "turntable.png"))
