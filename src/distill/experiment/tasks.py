"""The ``TASKS`` registry: one entry per family, the only place the CLI learns about families.

A family is one folder ``distill/tasks/<family>/`` whose ``task.py`` registers a
:class:`Task`: its recipe model, how a recipe runs, how a finished run is evaluated
and exported, and its method registry. Adding a family adds that folder and one
import line in ``distill/tasks/__init__.py``; nothing in the CLI changes.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from distill.experiment.runner import Run
from distill.experiment.table import Table
from distill.registry import Registry

#: task name → :class:`Task` instance (filled by ``import distill.tasks``).
TASKS = Registry("task")


class Task:
    """What a family tells the engine. Subclasses set ``name``, ``recipe`` and ``methods``."""

    name: str
    recipe: type[BaseModel]
    methods: Registry | None = None

    def run(self, recipe: BaseModel, run: Run) -> Table:
        """Run every stage of ``recipe`` in ``run`` and return the results table (results.json written)."""
        raise NotImplementedError

    def evaluate(self, folder: Path, recipe: BaseModel, weights: Path | None = None) -> Table:
        """The metric table of a finished run's student (or of ``weights``)."""
        raise NotImplementedError

    def export(self, folder: Path, recipe: BaseModel, fmt: str, weights: Path | None = None,
               out: Path | None = None) -> list[Path]:
        """Write the run's student for deployment (TorchScript ``.pt`` or ONNX) and return the files."""
        raise NotImplementedError


def register_task(task: Task) -> Task:
    """Put ``task`` into :data:`TASKS` under its name."""
    TASKS.register(task.name)(task)
    return task


def all_tasks() -> dict[str, Task]:
    """Every registered family by name (importing ``distill.tasks`` registers the built-in ones)."""
    import distill.tasks  # noqa: F401

    return {name: TASKS.get(name) for name in TASKS.names()}


def get_task(name: str) -> Task:
    """The registered family ``name``."""
    import distill.tasks  # noqa: F401

    return TASKS.get(name)
