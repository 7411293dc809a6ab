"""The ``classification`` family in the ``TASKS`` registry: run, evaluate and export its runs."""

from __future__ import annotations

from pathlib import Path

from distill.experiment.runner import Run
from distill.experiment.table import Column, Table, number
from distill.experiment.tasks import Outcome, Task, register_task
from distill.export import export_model
from distill.tasks.classification.methods import LOSSES
from distill.tasks.classification.metrics import evaluate_classifier
from distill.tasks.classification.recipe import ClassificationRecipe
from distill.tasks.classification.report import plot_learning_curves, results_table
from distill.tasks.classification.run import load_run_student, run_recipe


class ClassificationTask(Task):
    """Model compression: a teacher network into a smaller or different student (logits, features,
    relations, cross-sensor views), beside from-scratch baselines with the same budget."""

    name = "classification"
    recipe = ClassificationRecipe
    methods = LOSSES

    def execute(self, recipe: ClassificationRecipe, run: Run) -> Outcome:
        rows, splits, notes = run_recipe(recipe, run)
        dataset = {"name": splits.name, "train": len(splits.train), "test": len(splits.test),
                   "transfer": len(splits.transfer) if splits.transfer is not None else 0}
        return Outcome(results_table(rows, recipe.name, notes), {"dataset": dataset},
                       [("Learning curves", plot_learning_curves(rows, run.folder / "learning_curves.png"))])

    def check_search(self, recipe: ClassificationRecipe, folder: Path, resume: bool) -> None:
        from distill.tasks.classification.search import check_searchable, check_study  # Optuna: for tune only

        check_searchable(recipe)
        check_study(recipe, folder, resume)

    def search(self, recipe: ClassificationRecipe, run: Run, budget_s: float, trials: int | None) -> Outcome:
        """Choose the method and knobs on a validation split (:func:`~distill.tasks.classification.search.
        run_search`), then run the chosen recipe as ``distill run`` would, in ``final/``: its test table."""
        from distill.tasks.classification.search import run_search, tune_outcome

        found = run_search(recipe, run, budget_s, trials)
        final = self.run(found.chosen, Run(run.folder / "final", found.chosen, resume=run.resume))
        return tune_outcome(found, final, budget_s)

    def evaluate(self, folder: Path, recipe: ClassificationRecipe, weights: Path | None = None) -> Table:
        student, splits = load_run_student(folder, recipe, weights)
        metrics = evaluate_classifier(student, splits.test)
        columns = (Column("model", "model"), Column("acc", "test accuracy", number(".2f", 100, " %")),
                   Column("loss", "cross-entropy", number(".4f")), Column("samples", "test samples"))
        row = {"model": f"student ({recipe.student.model})", **metrics, "samples": len(splits.test)}
        return Table(f"{recipe.name}: evaluation", columns, [row])

    def export(self, folder: Path, recipe: ClassificationRecipe, fmt: str, weights: Path | None = None,
               out: Path | None = None) -> list[Path]:
        student, splits = load_run_student(folder, recipe, weights)
        out = Path(out) if out else Path(folder) / ("student.pt" if fmt == "torchscript" else "student.onnx")
        return [export_model(student, splits.test[0][0].unsqueeze(0), out, fmt)]


register_task(ClassificationTask())
