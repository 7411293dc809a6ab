"""What every scene method shares: its registry and the two calls the runner makes.

A method is a registered class built from its recipe options: ``check_recipe`` refuses a recipe it
cannot run (before anything is loaded or trained) and ``run`` produces the rows — the baselines measured
in the same run, then its own student — from the run's :class:`~distill.tasks.scene.context.SceneContext`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from distill.experiment.runner import Run
from distill.registry import Registry
from distill.scenes import Representation
from distill.tasks.scene.metrics import SceneRow

#: name → method class; ``Method(**options).run(context, run)`` returns a :class:`MethodResult`.
SCENE_METHODS = Registry("scene method")


@dataclass
class MethodResult:
    """A method's rows (baselines first, its student last), the student itself, its facts for ``results.json``
    and Markdown sections of its own for ``report.md``."""

    rows: list[SceneRow]
    student: Representation
    details: dict = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)


class SceneMethod:
    """Base of the registered scene methods."""

    def check_recipe(self, recipe) -> None:
        """Raise a ConfigError if this method cannot run ``recipe`` (called when the recipe loads)."""

    def run(self, context, run: Run) -> MethodResult:
        """The baselines and the method's own student, trained in ``run`` and scored by ``context``."""
        raise NotImplementedError
