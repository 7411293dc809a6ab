"""The ``scene`` family in the ``TASKS`` registry: run, evaluate and export 3-D representation students."""

from __future__ import annotations

from pathlib import Path

import torch

from distill.errors import ConfigError, DistillError
from distill.experiment.runner import Run
from distill.experiment.table import Column, Table, number
from distill.experiment.tasks import Outcome, Task, register_task
from distill.scenes import image_metrics, read_representation, render_mesh
from distill.scenes.files import check_scene_file
from distill.tasks.scene.methods import SCENE_METHODS
from distill.tasks.scene.metrics import render_seconds
from distill.tasks.scene.recipe import SceneRecipe
from distill.tasks.scene.report import HEADERS
from distill.tasks.scene.run import STUDENT, TEACHER, run_scene_recipe, scene_file


def student_file(folder: Path, weights: Path | None) -> Path:
    """The student's representation file: ``weights`` when given, else the one the run wrote."""
    if weights is not None:
        return check_scene_file(weights)
    found = scene_file(folder, STUDENT)
    if found is None:
        raise DistillError(f"{folder} holds no student.ply or student.npz; pass the folder a finished scene run "
                           "wrote, or --weights with a .ply / .npz representation file.")
    return found


class SceneTask(Task):
    """3-D representations: a teacher scene converted into another representation or compacted into
    fewer Gaussians, beside the same student fitted to the views in the same run; or a 2-D network's
    features lifted onto its Gaussians, beside the network itself."""

    name = "scene"
    recipe = SceneRecipe
    methods = SCENE_METHODS

    def execute(self, recipe: SceneRecipe, run: Run) -> Outcome:
        return run_scene_recipe(recipe, run)

    def evaluate(self, folder: Path, recipe: SceneRecipe, weights: Path | None = None) -> Table:
        """The student (or ``weights``) rendered from the recipe's held-out cameras: PSNR / SSIM against the
        mesh and, when the run wrote its teacher, against the teacher; render time per view."""
        scene = read_representation(student_file(Path(folder), weights))
        if scene.features:
            raise ConfigError(f"the student in {folder} is a feature field ({scene.channels} channels), not colours to "
                              "score against the mesh: its held-out part mIoU, feature cosine and render time are in "
                              "the run's results.json; render it with distill.scenes.read_representation(path).render.")
        [mesh] = recipe.views.load_meshes()
        held, size = recipe.views.held_out_cameras(), recipe.views.size
        row = {"model": f"student ({type(scene).__name__})", "representation": type(scene).__name__,
               "params": scene.parameter_count(), **image_metrics(scene, render_mesh(mesh, held, size).float(), held, size)}
        teacher_path = scene_file(Path(folder), TEACHER)
        if teacher_path is not None:
            with torch.no_grad():
                truth = read_representation(teacher_path).render(held, size).clamp(0, 1).float()
            against = image_metrics(scene, truth, held, size)
            row |= {"psnr_teacher": against["psnr"], "ssim_teacher": against["ssim"]}
        row["render_ms"] = 1000 * render_seconds(scene, held, size, recipe.evaluate.render_repeats)
        columns = [Column("model", "model"), *(Column(key, HEADERS[key][0], number(HEADERS[key][1]))
                                               for key in HEADERS if key in row)]
        return Table(f"{recipe.name}: evaluation on {len(held)} held-out views", columns, [row])

    def export(self, folder: Path, recipe: SceneRecipe, fmt: str, weights: Path | None = None,
               out: Path | None = None) -> list[Path]:
        """The student's representation file (``.ply`` Gaussians, ``.npz`` grid or field), read back and
        written to ``out`` (default ``<run>/export/student<suffix>``): a scene has no network to trace."""
        if fmt == "onnx":
            raise ConfigError("a scene run's student is a 3-D representation, not a network: it exports as its own "
                              "file (.ply Gaussians, .npz grid or field), which `distill export` writes without "
                              "--format onnx.")
        scene = read_representation(student_file(Path(folder), weights))
        path = Path(out) if out else Path(folder) / "export" / f"{STUDENT}{scene.suffix}"
        if path.suffix.lower() != scene.suffix:
            raise ConfigError(f"the student is a {type(scene).__name__}, written as {scene.suffix}; name --out "
                              f"e.g. {path.with_suffix(scene.suffix)}.")
        return [scene.save(path)]


register_task(SceneTask())
