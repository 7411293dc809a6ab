"""A rich progress bar showing loss, accuracy and samples/s; silent when disabled."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

_SHOWN = ("train_loss", "train_acc", "acc", "samples_per_s")


class _Bar:
    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self.progress, self.task = progress, task

    def update(self, step: int, row: dict | None = None) -> None:
        if self.progress is None:
            return
        fields = {}
        if row is not None:
            fields["stats"] = "  ".join(f"{k} {row[k]:.4g}" for k in _SHOWN if k in row)
        self.progress.update(self.task, completed=step, **fields)


@contextmanager
def progress_bar(description: str, total: int, completed: int = 0, enabled: bool = True) -> Iterator[_Bar]:
    """Context manager yielding a bar with ``update(step, row)``."""
    if not enabled:
        yield _Bar(None, None)
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
        transient=False, refresh_per_second=2,  # rich redraws from a thread that holds the GIL
    )
    with progress:
        task = progress.add_task(description, total=total, completed=completed, stats="")
        yield _Bar(progress, task)
