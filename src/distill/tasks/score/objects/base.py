"""What a kind of object score distillation can make tells the one runner (:mod:`distill.tasks.score.run`).

A kind is a registered class: ``prepare`` loads what its prior learns from, checks the guidance against
an untrained prior, obtains the prior and whatever the rows are scored against; ``references`` scores
what every result is read beside; ``distil`` moves a fresh object by a guidance and scores it; ``save``
writes it; ``details`` and ``figure`` add its facts and its picture to the run's results. A recipe's
``object`` section names its kind through ``object_kind`` (points for particles and images, scene for
any 3-D representation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.experiment.runner import Run
from distill.registry import Registry
from distill.tasks.score.metrics import ScoreRow
from distill.tasks.score.recipe import ScoreRecipe

#: object kind name → its class; ``ObjectKind()`` runs every recipe of that kind.
OBJECT_KINDS = Registry("score object kind")


class ObjectKind:
    """Base of the registered object kinds. ``notes`` are the results table's notes."""

    notes: tuple[str, ...] = ()

    def prepare(self, recipe: ScoreRecipe, run: Run) -> Any:
        """The run's context: the prior (checked untrained first, then cached or trained) and what scores."""
        raise NotImplementedError

    def references(self, context: Any, run: Run) -> list[ScoreRow]:
        """The rows every result is read beside (the initial state among them), scored."""
        raise NotImplementedError

    def distil(self, context: Any, run: Run, guidance, label: str) -> tuple[ScoreRow, Any]:
        """A fresh object moved by ``guidance`` (the training stage ``label``), scored with its cost; the
        row and the object."""
        raise NotImplementedError

    def save(self, context: Any, made: Any, folder: Path) -> Path:
        """Write the object ``distil`` made into the run ``folder``."""
        raise NotImplementedError

    def details(self, context: Any, row: ScoreRow) -> dict:
        """What ``results.json`` records beyond the guidance and the prior (``row`` is the guidance's)."""
        raise NotImplementedError

    def figure(self, context: Any, rows: list[ScoreRow], folder: Path) -> tuple[str, Path | None]:
        """The report's figure of ``rows``: its caption and file."""
        raise NotImplementedError
