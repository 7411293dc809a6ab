"""Run a ``task: scene`` recipe: prepare the mesh, its views and the teacher, let the method train its
baselines and its student, score the teacher beside them, and write the student, the teacher, the
table and the figures into the run folder."""

from __future__ import annotations

from pathlib import Path

from distill.experiment.runner import Run
from distill.experiment.tasks import Outcome
from distill.scenes import Representation
from distill.tasks.scene.context import SceneContext, prepare_scene
from distill.tasks.scene.recipe import SceneRecipe
from distill.tasks.scene.report import plot_curves, plot_turntables, scene_table

#: the stems of the files a run writes its student and teacher to (the suffix is the representation's)
STUDENT, TEACHER = "student", "teacher"


def scene_file(folder: Path, stem: str) -> Path | None:
    """The representation file ``stem.ply`` or ``stem.npz`` a run wrote into ``folder``, if any."""
    return next((path for path in (Path(folder) / f"{stem}.ply", Path(folder) / f"{stem}.npz") if path.is_file()), None)


def write_scene(scene: Representation, folder: Path, stem: str) -> Path:
    """Write ``scene`` as ``folder/stem<suffix>``, removing a file of the other suffix a former run left."""
    stale = scene_file(folder, stem)
    if stale is not None and stale.suffix != scene.suffix:
        stale.unlink()
    return scene.save(Path(folder) / f"{stem}{scene.suffix}")


def teacher_label(context: SceneContext) -> str:
    spec = context.recipe.teacher
    source = f"fitted to {len(context.views.images)} views" if spec.file is None else Path(spec.file).name
    return f"teacher ({spec.kind or type(context.teacher).__name__}, {source})"


def run_scene_recipe(recipe: SceneRecipe, run: Run) -> Outcome:
    """Every stage of ``recipe`` in ``run``; the table, details and figures."""
    method = recipe.method.build()
    context = prepare_scene(recipe, run)
    teacher_cost = {"seconds": context.teacher_info.get("seconds")}
    rows = [context.score(teacher_label(context), context.teacher, teacher_cost, teacher=True)]
    result = method.run(context, run)
    rows += result.rows
    files = {"student": write_scene(result.student, run.folder, STUDENT).name,
             "teacher": write_scene(context.teacher, run.folder, TEACHER).name}
    target = context.teacher_psnr - recipe.evaluate.margin_db
    details = {"method": recipe.method.name, "mesh": context.name, "teacher": context.teacher_info,
               "teacher_psnr": context.teacher_psnr, "target_psnr": target, "files": files,
               "views": {"count": len(context.views.images), "seconds": context.views_info.get("seconds")},
               **result.details}
    figures = [("Turntables (8 views at 15° elevation): the true mesh, the teacher, the baselines, the student",
                plot_turntables(context.turntables() + rows, run.folder / "turntable.png"))]
    if result.details.get("curves"):
        figures.append(("Held-out PSNR against training time",
                        plot_curves(result.details["curves"], target, run.folder / "curves.png")))
    return Outcome(scene_table(rows, recipe.name, recipe.evaluate.margin_db), details, figures, result.sections)
