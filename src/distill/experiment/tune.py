"""``distill tune``: search a recipe's method and knobs within a wall-clock budget, in the family that owns it.

The family does the search (:meth:`distill.experiment.tasks.Task.search`); this module reads the budget,
opens the run folder and writes ``results.json`` and ``report.md`` as ``distill run`` does.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from distill.errors import ConfigError, check_count

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_budget(text: str) -> float:
    """Seconds in a duration written ``90s``, ``20m``, ``1h`` or ``1h30m``."""
    match = _DURATION.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ConfigError(f"budget {text!r} is not a duration: write a number and a unit, e.g. 90s, 20m, 1h or 1h30m.")
    hours, minutes, seconds = (float(value or 0) for value in match.groups())
    total = 3600 * hours + 60 * minutes + seconds
    if total <= 0:
        raise ConfigError(f"budget {text!r} is no time at all: give the search some, e.g. 20m.")
    return total


def tune(recipe: BaseModel | Path | str | dict, budget_s: float | None = None, trials: int | None = None,
         out: Path | str | None = None, overrides: list[str] | None = None, resume: bool = False):
    """Search ``recipe``'s method and knobs for ``budget_s`` seconds of trials (at most ``trials``) in the
    folder ``out`` (default ``runs/<name>-tune``); ``budget_s`` and ``trials`` default to the recipe's
    ``search.budget`` and ``search.trials``. Returns the family's :class:`~distill.experiment.tasks.Outcome`
    (its table holds the test scores of the chosen setting and of scratch, measured once at the end)."""
    from distill.experiment.recipe import load_recipe
    from distill.experiment.tasks import get_task

    if not isinstance(recipe, BaseModel) or overrides:
        recipe = load_recipe(recipe.model_dump(mode="json") if isinstance(recipe, BaseModel) else recipe, overrides)
    search = getattr(recipe, "search", None)
    if budget_s is None and getattr(search, "budget", None):
        budget_s = parse_budget(search.budget)
    if budget_s is None:
        raise ConfigError("distill tune needs a budget: --budget 20m on the command line, budget_s=1200 in Python, "
                          "or search.budget: 20m in the recipe.")
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not budget_s > 0:
        raise ConfigError(f"budget_s must be a positive number of seconds, got {budget_s!r}.")
    trials = check_count("trials", trials) if trials is not None else getattr(search, "trials", None)
    return get_task(recipe.task).tune(recipe, tune_folder(recipe, out), float(budget_s), trials, resume)


def tune_folder(recipe: BaseModel, out: Path | str | None = None) -> Path:
    """``out``, or ``runs/<recipe name>-tune``."""
    return Path(out) if out else Path("runs") / f"{getattr(recipe, 'name', 'experiment')}-tune"
