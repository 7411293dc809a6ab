"""A results table every family fills the same way, rendered to the terminal, Markdown and PNG."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table as RichTable  # noqa: E402


@dataclass(frozen=True)
class Column:
    """One column: the row key it shows, its header and how a value is written."""

    key: str
    header: str
    format: Callable[[object], str] = str


def number(spec: str = ".4g", scale: float = 1.0, suffix: str = "") -> Callable[[object], str]:
    """A formatter for numbers (``–`` for a missing or NaN value)."""

    def fmt(value: object) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        if isinstance(value, str):
            return value
        return f"{scale * float(value):{spec}}{suffix}"

    return fmt


@dataclass
class Table:
    """Rows of named values under a title; ``notes`` are printed below the table."""

    title: str
    columns: Sequence[Column]
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def cells(self) -> list[list[str]]:
        """Every row as formatted strings, in column order."""
        return [[c.format(row[c.key]) if row.get(c.key) is not None else "–" for c in self.columns]
                for row in self.rows]

    def print(self, console: Console | None = None) -> None:
        """The table on the terminal."""
        table = RichTable(title=self.title)
        for i, column in enumerate(self.columns):
            table.add_column(column.header, justify="left" if i == 0 else "right")
        for line in self.cells():
            table.add_row(*line)
        console = console or Console()
        console.print(table)
        for note in self.notes:
            console.print(note)

    def markdown(self) -> str:
        """The table (and its notes) as Markdown."""
        lines = ["| " + " | ".join(c.header for c in self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(line) + " |" for line in self.cells()]
        return "\n".join(lines + [""] + self.notes)

    def png(self, path: Path) -> Path:
        """The table drawn as an image (for slides and issues)."""
        cells = self.cells()
        figure, axis = plt.subplots(figsize=(min(16, 1.6 * len(self.columns) + 2), 0.42 * (len(cells) + 2)))
        axis.axis("off")
        drawn = axis.table(cellText=cells or [["–"] * len(self.columns)], colLabels=[c.header for c in self.columns],
                           loc="center", cellLoc="right")
        drawn.auto_set_font_size(False)
        drawn.set_fontsize(8)
        drawn.auto_set_column_width(list(range(len(self.columns))))
        axis.set_title(self.title, fontsize=10)
        figure.tight_layout()
        figure.savefig(path, dpi=130, bbox_inches="tight")
        plt.close(figure)
        return Path(path)

    def to_json(self) -> dict:
        """Title, column keys and headers, raw rows and notes (the ``results.json`` table)."""
        return {"title": self.title, "columns": {c.key: c.header for c in self.columns},
                "rows": self.rows, "notes": self.notes}
