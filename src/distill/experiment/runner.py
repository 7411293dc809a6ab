"""A run folder shared by every family: ``recipe.yaml``, one sub-folder per stage, ``results.json``.

Each stage is one call of :func:`distill.engine.train` in its own folder; with
``resume`` a stage continues from its newest checkpoint only where one exists, so a
run stopped in its third stage redoes nothing (earlier stages come from the cache
or their finished checkpoints) and a stage that never started starts afresh.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel
from torch import nn

from distill.engine.checkpoint import latest_checkpoint
from distill.engine.config import TrainConfig
from distill.engine.trainer import Evaluator, TrainResult, train
from distill.errors import DistillError
from distill.experiment.recipe import dump_recipe, load_recipe
from distill.experiment.table import Table

RESULTS_FORMAT = "distill-results-v1"


class Run:
    """The folder of one run of a recipe."""

    def __init__(self, folder: Path, recipe: BaseModel, resume: bool = False, write_recipe: bool = True) -> None:
        """``write_recipe=False`` reopens a finished run (eval, export) without rewriting its ``recipe.yaml``."""
        self.folder, self.recipe, self.resume = Path(folder), recipe, resume
        self.folder.mkdir(parents=True, exist_ok=True)
        if write_recipe:
            self.record_recipe(recipe)

    def record_recipe(self, recipe: BaseModel) -> None:
        """Write ``recipe`` as the run's ``recipe.yaml``: a family that fills in defaults records what it ran."""
        self.recipe = recipe
        (self.folder / "recipe.yaml").write_text(dump_recipe(recipe))

    def resumes(self, label: str) -> bool:
        """Whether stage ``label`` continues from a checkpoint (asked to resume, and one exists)."""
        return self.resume and latest_checkpoint(self.folder / label / "checkpoints") is not None

    def train(self, objective: nn.Module, data, config: TrainConfig, label: str,
              evaluator: Evaluator | None = None) -> TrainResult:
        """Train ``objective`` as stage ``label`` in ``folder/label``."""
        return train(objective, data, config, self.folder / label, evaluator, resume=self.resumes(label),
                     description=label)

    def write_results(self, task: str, table: Table, details: dict | None = None) -> dict:
        """``results.json``: one schema for every family (format, task, name, columns, rows, notes, details)."""
        results = {"format": RESULTS_FORMAT, "task": task, "name": getattr(self.recipe, "name", self.folder.name),
                   **table.to_json(), "details": details or {}}
        (self.folder / "results.json").write_text(json.dumps(results, indent=1, default=float))
        return results

    def write_report(self, table: Table, figures: Sequence[tuple[str, Path | None]] = (),
                     sections: Sequence[str] = ()) -> Path:
        """``report.md``: the table, its PNG, the family's figures (caption, file) and its own Markdown
        sections beside it."""
        image = table.png(self.folder / "table.png")
        parts = [f"# {table.title}", "", table.markdown(), ""]
        for caption, path in figures:
            if path is not None:
                parts += [f"## {caption}", "", f"![{caption}]({Path(path).name})", ""]
        for section in sections:
            parts += [section, ""]
        parts += [f"The table as an image: `{image.name}`. Numbers: `results.json`; per-step logs: "
                  "`*/metrics.csv`; recipe as run: `recipe.yaml`.", ""]
        path = self.folder / "report.md"
        path.write_text("\n".join(parts))
        return path


def load_run_recipe(folder: Path) -> BaseModel:
    """The recipe a run folder was made with (its ``recipe.yaml``)."""
    recipe_file = Path(folder) / "recipe.yaml"
    if not recipe_file.exists():
        raise DistillError(f"{folder} is not a distill run folder (no recipe.yaml); pass the folder `distill run` wrote.")
    return load_recipe(recipe_file)
