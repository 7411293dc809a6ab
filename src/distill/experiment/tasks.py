"""The ``TASKS`` registry: one entry per family, the only place the CLI learns about families.

A family is one folder ``distill/tasks/<family>/`` whose ``task.py`` registers a
:class:`Task`: its recipe model, how a recipe runs, how a finished run is evaluated
and exported, the options its ``eval`` / ``export`` take, and its method registry.

Families load on demand: :data:`BUILTIN_FAMILIES` maps each built-in name to the
module that registers it, and a user's package adds its own family through the
``distill.tasks`` entry-point group (``[project.entry-points."distill.tasks"]
myfamily = "my_package.task"``), so loading a classification recipe imports no
language model or 3-D dependency.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from distill.errors import ConfigError, DistillError, unknown_name_message
from distill.experiment.runner import Run
from distill.experiment.table import Table
from distill.registry import Registry

#: built-in family name → the module whose import registers it
BUILTIN_FAMILIES = {
    "classification": "distill.tasks.classification.task",
    "steps": "distill.tasks.steps.task",
    "score": "distill.tasks.score.task",
    "language": "distill.tasks.language.task",
    "dataset": "distill.tasks.dataset.task",
    "scene": "distill.tasks.scene.task",
}

#: the entry-point group through which an installed package registers a family of its own
ENTRY_POINT_GROUP = "distill.tasks"


def _family_modules() -> dict[str, str]:
    """Every known family name → the module that registers it: the built-in ones, then installed packages'."""
    modules = dict(BUILTIN_FAMILIES)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        modules.setdefault(point.name, point.module)
    return modules


class FamilyRegistry(Registry):
    """The families by name: every known family is listed, and its module is imported the first time it is
    looked up, so one recipe imports one family."""

    def names(self) -> list[str]:
        return sorted(set(self._entries) | set(_family_modules()))

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def get(self, name: str):
        if name not in self._entries:
            modules = _family_modules()
            if name not in modules:
                raise DistillError(unknown_name_message(self.kind, name, modules))
            importlib.import_module(modules[name])
            if name not in self._entries:
                raise ConfigError(f"module {modules[name]} was named for family {name!r} but registered no task "
                                  "of that name; call register_task(...) there with a Task whose name matches.")
        return super().get(name)

    def describe(self, name: str) -> str:
        """The family's summary and the options its ``eval`` / ``export`` take."""
        task = self.get(name)
        options = [f"{command} {o.flag} {o.metavar}: {o.help}" for command, declared in
                   (("eval", task.eval_options), ("export", task.export_options)) for o in declared]
        return " ".join([super().describe(name), *(f"[{option}]" for option in options)])


#: task name → :class:`Task` instance, each family imported when first looked up
TASKS = FamilyRegistry("task")


@dataclass
class Outcome:
    """What a family's run produced: the results table, the details for ``results.json``, the figures
    (caption, file) and any Markdown sections of its own for ``report.md``."""

    table: Table
    details: dict = field(default_factory=dict)
    figures: list[tuple[str, Path | None]] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TaskOption:
    """A command-line option a family's ``eval`` or ``export`` takes (``--text FILE``), passed on to its
    :meth:`Task.evaluate` / :meth:`Task.export` as the keyword ``dest``."""

    flag: str
    dest: str
    help: str
    metavar: str = "VALUE"
    type: Callable[[str], Any] = str


class Task:
    """What a family tells the engine. Subclasses set ``name``, ``recipe`` and ``methods``, and may declare
    further registries a recipe names (``listings``: ``distill list <family>-<key>``) and the extra options
    of their ``eval`` / ``export`` commands."""

    name: str
    recipe: type[BaseModel]
    methods: Registry | None = None
    listings: dict[str, Registry] = {}
    eval_options: tuple[TaskOption, ...] = ()
    export_options: tuple[TaskOption, ...] = ()

    def run(self, recipe: BaseModel, run: Run) -> Table:
        """Run every stage of ``recipe`` in ``run``, write ``results.json`` and ``report.md``, return the table."""
        outcome = self.execute(recipe, run)
        run.write_results(self.name, outcome.table, outcome.details)
        run.write_report(outcome.table, outcome.figures, outcome.sections)
        return outcome.table

    def execute(self, recipe: BaseModel, run: Run) -> Outcome:
        """The family's own work: every stage of ``recipe`` in ``run``, and what it produced."""
        raise NotImplementedError

    def tune(self, recipe: BaseModel, folder: Path, budget_s: float, trials: int | None = None,
             resume: bool = False) -> Outcome:
        """Search ``recipe``'s method and knobs for ``budget_s`` seconds (at most ``trials`` trials) in the run
        folder ``folder`` (``resume``: continue the search found there), write ``results.json`` and
        ``report.md``, and return what it found (``distill tune``)."""
        self.check_search(recipe, Path(folder), resume)
        run = Run(folder, recipe, resume=resume)
        outcome = self.search(recipe, run, budget_s, trials)
        run.write_results(self.name, outcome.table, outcome.details)
        run.write_report(outcome.table, outcome.figures, outcome.sections)
        return outcome

    def check_search(self, recipe: BaseModel, folder: Path, resume: bool) -> None:
        """Refuse, before anything is written, a recipe :meth:`search` cannot search; a family without a
        search refuses every recipe."""
        raise ConfigError(f"distill tune: the {self.name} family has no search; it searches classification "
                          "recipes (task: classification). Run this recipe with `distill run`.")

    def search(self, recipe: BaseModel, run: Run, budget_s: float, trials: int | None) -> Outcome:
        """The family's own search (see :meth:`tune`): the trials, and what they found."""
        raise NotImplementedError

    def evaluate(self, folder: Path, recipe: BaseModel, weights: Path | None = None, **options: Any) -> Table:
        """The metric table of a finished run's student (or of ``weights``)."""
        raise NotImplementedError

    def export(self, folder: Path, recipe: BaseModel, fmt: str, weights: Path | None = None,
               out: Path | None = None, **options: Any) -> list[Path]:
        """Write the run's student for deployment (TorchScript ``.pt`` or ONNX) and return the files."""
        raise NotImplementedError

    def parse_options(self, command: str, args: list[str]) -> dict[str, Any]:
        """The family's own options of ``command`` (``eval`` or ``export``) read from ``args``; an option the
        family does not take is refused with the ones it does."""
        declared = self.eval_options if command == "eval" else self.export_options
        parser = argparse.ArgumentParser(prog=f"distill {command} ({self.name} run)", add_help=False,
                                         exit_on_error=False)
        for option in declared:
            parser.add_argument(option.flag, dest=option.dest, metavar=option.metavar, type=option.type,
                                help=option.help)
        try:
            parsed, unknown = parser.parse_known_args(args)
        except argparse.ArgumentError as err:
            raise ConfigError(f"distill {command}: {err}") from None
        if unknown:
            takes = (f"it takes {', '.join(f'{o.flag} {o.metavar}' for o in declared)}" if declared
                     else "it takes no options of its own")
            raise ConfigError(f"distill {command}: a {self.name} run does not take {' '.join(unknown)}"
                              f"{_elsewhere(command, unknown)}; {takes}.")
        return {key: value for key, value in vars(parsed).items() if value is not None}


def _elsewhere(command: str, flags: list[str]) -> str:
    """What the other families mean by ``flags``, where one of them declares it (for an error message)."""
    meanings = [f"{o.flag} {o.help} in {task.name} runs" for task in all_tasks().values()
                for o in (task.eval_options if command == "eval" else task.export_options) if o.flag in flags]
    return f" ({'; '.join(meanings)})" if meanings else ""


def register_task(task: Task) -> Task:
    """Put ``task`` into :data:`TASKS` under its name."""
    TASKS.register(task.name)(task)
    return task


def get_task(name: str) -> Task:
    """The registered family ``name``, importing only its own module."""
    return TASKS.get(name)


def all_tasks() -> dict[str, Task]:
    """Every family by name (imports them all: for ``distill list``)."""
    return {name: TASKS.get(name) for name in TASKS.names()}
