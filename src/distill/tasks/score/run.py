"""Run a ``task: score`` recipe, whatever object it makes: the kind its ``object`` section names
(:data:`~distill.tasks.score.objects.OBJECT_KINDS`) prepares the prior, scores the references, moves a
fresh object by the guidance and writes it; this module puts the rows, details and figure together.
"""

from __future__ import annotations

from distill.experiment.runner import Run
from distill.experiment.tasks import Outcome
from distill.tasks.score.objects import OBJECT_KINDS
from distill.tasks.score.recipe import ScoreRecipe
from distill.tasks.score.report import score_table


def run_score_recipe(recipe: ScoreRecipe, run: Run) -> Outcome:
    """The references first (the initial state among them), then the guidance's object, written to the run
    folder; the table, the run's details and the kind's figure."""
    kind = OBJECT_KINDS.build(recipe.object.object_kind)
    context = kind.prepare(recipe, run)
    rows = kind.references(context, run)
    row, made = kind.distil(context, run, recipe.guidance.build(), recipe.guidance.name)
    rows.append(row)
    kind.save(context, made, run.folder)
    details = {"guidance": recipe.guidance.name, "prior": context.prior_info, **kind.details(context, row)}
    return Outcome(score_table(rows, recipe.name, kind.notes), details, [kind.figure(context, rows, run.folder)])
