"""``distill.run``: a recipe (a file, a dict or a loaded model) run end to end from Python, as ``distill run`` does."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from distill.experiment.table import Table


def run(recipe: BaseModel | Path | str | dict, out: Path | str | None = None, overrides: list[str] | None = None,
        resume: bool = False) -> Table:
    """Run every stage of ``recipe`` (``overrides``: ``--set``-style ``key=value`` strings) in the folder ``out``
    (default ``runs/<name>``; ``resume``: continue from its checkpoints) and return the results table; the
    folder holds ``results.json``, ``report.md`` and the recipe as run (defaults filled in)."""
    from distill.experiment.recipe import load_recipe
    from distill.experiment.runner import Run
    from distill.experiment.tasks import get_task

    if not isinstance(recipe, BaseModel) or overrides:
        recipe = load_recipe(recipe.model_dump(mode="json") if isinstance(recipe, BaseModel) else recipe, overrides)
    folder = Path(out) if out else Path("runs") / getattr(recipe, "name", "experiment")
    return get_task(recipe.task).run(recipe, Run(folder, recipe, resume=resume))
