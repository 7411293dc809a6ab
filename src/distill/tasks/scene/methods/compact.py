"""``compact``: a teacher of many Gaussians into a student with ``ratio`` times fewer.

The teacher's Gaussians are ranked by their accumulated blending weight over ``importance_views``
random views — the share of the images each one makes — and the most important ``N / ratio`` are kept
(LightGaussian's global significance pruning, Fan et al. 2023, scores hits × opacity × volume; the
blending weight is the Mini-Splatting variant, Fang & Wang 2024). The kept Gaussians are then trained on
the teacher's renders of ``pseudo_views`` random views it never saw (Distilled-3DGS, Xiang et al. 2025,
distils from the teacher's renders of such pseudo views; its several teachers and its structure term
on the centres are not used here). Baselines in the same run, with the same budget: a student of
``N / ratio`` Gaussians fitted to the training views alone, the pruned teacher with no further
training, and (``finetune``) the pruned teacher fine-tuned on the training views, which is
LightGaussian's recovery step without a teacher.
"""

from __future__ import annotations

import time

import torch

from distill.errors import ConfigError, check_count
from distill.experiment.runner import Run
from distill.scenes import GaussianScene, OrbitCameras, ReconstructionObjective
from distill.tasks.scene.context import SceneContext
from distill.tasks.scene.methods.base import SCENE_METHODS, MethodResult, SceneMethod
from distill.tasks.scene.recipe import RepresentationSpec


def check_gaussians(scene) -> GaussianScene:
    """``scene``, refused unless it is made of Gaussians (what compaction prunes)."""
    if not isinstance(scene, GaussianScene):
        raise ConfigError(f"compaction keeps Gaussians; got a {type(scene).__name__} (convert it into Gaussians "
                          "first: distill.tasks.scene.convert).")
    return scene


def check_gaussian_teacher(recipe, method: str, student: str) -> None:
    """Refuse a recipe for ``method`` unless its teacher is made of Gaussians and it has no student section
    (the method makes its ``student`` from the teacher's Gaussians)."""
    teacher = recipe.teacher
    if (teacher.kind or "gaussians") != "gaussians" or (teacher.file or ".ply").lower()[-4:] != ".ply":
        raise ConfigError(f"method {method} needs a teacher of Gaussians: teacher.kind: gaussians, or a "
                          "teacher.file ending in .ply.")
    if recipe.student is not None:
        raise ConfigError(f"method {method} makes its student from the teacher ({student}); remove the student "
                          "section, or use method convert.")


def prune_by_importance(scene: GaussianScene, cameras: OrbitCameras, size, keep: int) -> GaussianScene:
    """The ``keep`` Gaussians of ``scene`` with the largest accumulated blending weight over ``cameras``
    (:meth:`~distill.scenes.GaussianScene.blending_importance`), as a new scene in their original order."""
    check_gaussians(scene)
    check_count("keep", keep)
    if keep > len(scene):
        raise ConfigError(f"keep ({keep}) exceeds the scene's {len(scene)} Gaussians.")
    importance = scene.blending_importance(cameras, size)
    return scene.subset(importance.topk(keep).indices.sort().values)


@SCENE_METHODS.register("compact")
class Compact(SceneMethod):
    """Compaction of Gaussians (LightGaussian; Distilled-3DGS): keep the ``1/ratio`` with the largest
    accumulated blending weight, then distil the teacher's renders of random views into them; beside a
    small student fitted to the training views, pruning alone, and pruning fine-tuned on the views."""

    def __init__(self, ratio: int = 8, importance_views: int = 32, pseudo_views: int = 256,
                 finetune: bool = True) -> None:
        if not isinstance(ratio, int) or isinstance(ratio, bool) or ratio < 2:
            raise ConfigError(f"compact option ratio must be an int >= 2 (N / ratio Gaussians are kept), got {ratio!r}.")
        self.ratio = ratio
        self.importance_views = check_count("compact option importance_views", importance_views)
        self.pseudo_views = check_count("compact option pseudo_views", pseudo_views)
        if not isinstance(finetune, bool):
            raise ConfigError(f"compact option finetune must be true or false, got {finetune!r}.")
        self.finetune = finetune

    def check_recipe(self, recipe) -> None:
        check_gaussian_teacher(recipe, "compact", f"1/{self.ratio} of its Gaussians")
        teacher = recipe.teacher
        if teacher.kind is not None and teacher.options.get("n", 0) // self.ratio < 1:
            raise ConfigError(f"teacher.options.n ({teacher.options.get('n')}) leaves no Gaussian at ratio "
                              f"{self.ratio}; give the teacher at least {self.ratio} Gaussians.")
        if recipe.train.batch_size > min(self.pseudo_views, recipe.views.count):
            raise ConfigError(f"train.batch_size ({recipe.train.batch_size}) exceeds the views a batch is drawn "
                              f"from (views.count {recipe.views.count}, pseudo_views {self.pseudo_views}); lower it.")

    def run(self, context: SceneContext, run: Run) -> MethodResult:
        teacher = check_gaussians(context.teacher)
        keep = len(teacher) // self.ratio
        if keep < 1:
            raise ConfigError(f"the teacher's {len(teacher)} Gaussians leave none at ratio {self.ratio}.")
        options = {**(context.recipe.teacher.options if context.recipe.teacher.kind else {}), "n": keep}
        small = context.student(RepresentationSpec(kind="gaussians", options=options))
        cost, small_curve = context.fit_to_views(run, small, "small_from_views")
        rows = [context.score(f"{keep} Gaussians from the {len(context.views.images)} training views", small, cost)]

        began = time.perf_counter()
        pruned = prune_by_importance(teacher, context.random_cameras(self.importance_views, offset=2), context.size, keep)
        pruning = time.perf_counter() - began
        rows.append(context.score(f"pruned to {keep} by blending weight, no training", pruned,
                                  {"seconds": pruning}))
        curves = {"small_from_views": small_curve.points}
        if self.finetune:
            tuned = pruned.subset(torch.arange(keep))
            objective = ReconstructionObjective(tuned, context.views, context.size, context.background)
            cost, curve = context.train(run, objective, objective.dataset(), "pruned_finetuned", offset=pruning)
            rows.append(context.score("pruned + fine-tuned on the training views", tuned, cost))
            curves["pruned_finetuned"] = curve.points

        views, seconds = context.teacher_views(self.pseudo_views)
        student = pruned.subset(torch.arange(keep))
        objective = ReconstructionObjective(student, views, context.size, context.background)
        cost, curve = context.train(run, objective, objective.dataset(), "distil", offset=pruning + seconds)
        rows.append(context.score(f"pruned + distilled ({self.pseudo_views} teacher views)", student, cost))
        curves["distilled"] = curve.points
        details = {"ratio": self.ratio, "teacher_gaussians": len(teacher), "student_gaussians": keep,
                   "pruning_seconds": pruning, "pseudo_view_seconds": seconds, "curves": curves}
        return MethodResult(rows, student, details)
