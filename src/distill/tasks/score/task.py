"""The ``score`` family in the ``TASKS`` registry: run a guidance into particles, images or 3-D scenes."""

from __future__ import annotations

from pathlib import Path

from distill.errors import ConfigError
from distill.experiment.runner import Run
from distill.experiment.table import Table
from distill.experiment.tasks import Outcome, Task, register_task
from distill.tasks.score.methods import GUIDANCES
from distill.tasks.score.recipe import ScoreRecipe
from distill.tasks.score.run import run_score_recipe

OUTPUTS = "particles.npz, or scene.ply for Gaussians and scene.npz for voxels"


class ScoreTask(Task):
    """Score distillation: a diffusion / flow prior distilled into a parametric object through its
    score, measured beside the real data's floor, the initial state and the prior's own samples."""

    name = "score"
    recipe = ScoreRecipe
    methods = GUIDANCES

    def execute(self, recipe: ScoreRecipe, run: Run) -> Outcome:
        return run_score_recipe(recipe, run)

    def evaluate(self, folder: Path, recipe: ScoreRecipe, weights: Path | None = None) -> Table:
        raise ConfigError(f"a score run has no student to re-evaluate: its result is the object itself "
                          f"({OUTPUTS}) in {folder}, scored in its results.json when it was made.")

    def export(self, folder: Path, recipe: ScoreRecipe, fmt: str, weights: Path | None = None,
               out: Path | None = None) -> list[Path]:
        raise ConfigError(f"a score run has no network to export: the object it made is already written in "
                          f"{folder} ({OUTPUTS}), in formats viewers open.")


register_task(ScoreTask())
