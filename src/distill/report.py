"""Results table (terminal and Markdown) and learning-curve plot of a run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

COLUMNS = ("model", "test acc", "params", "CPU latency / sample", "train steps", "train time")


def _cells(row) -> list[str]:
    return [
        row.name,
        f"{100 * row.acc:.2f} %",
        f"{row.params:,}",
        f"{1000 * row.latency_ms:.1f} µs",
        str(row.steps) if row.steps else "cached",
        f"{row.seconds:.0f} s" if row.steps else "–",
    ]


def print_table(rows: Sequence, title: str, console: Console | None = None) -> None:
    """Print the results as a rich table."""
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(*_cells(row))
    (console or Console()).print(table)


def markdown_table(rows: Sequence) -> str:
    """The results as a Markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def plot_learning_curves(rows: Sequence, path: Path) -> Path | None:
    """Test accuracy against training step for every row with evaluations; None if none has any."""
    curves = {row.name: [(r["step"], 100 * r["acc"]) for r in row.history if "acc" in r] for row in rows}
    if not any(len(points) > 1 for points in curves.values()):
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for row in rows:
        points = curves[row.name]
        if len(points) > 1:
            steps, accs = zip(*points)
            ax.plot(steps, accs, label=row.name, marker="." if len(points) < 30 else None)
        else:  # e.g. a cached teacher: only its final accuracy is known
            ax.axhline(100 * row.acc, linestyle="--", color="gray", label=f"{row.name} (final)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(rows: Sequence, run_dir: Path, title: str, notes: str = "") -> Path:
    """``report.md`` with the table and the learning-curve PNG beside it."""
    run_dir = Path(run_dir)
    curve = plot_learning_curves(rows, run_dir / "learning_curves.png")
    parts = [f"# {title}", "", markdown_table(rows), ""]
    if notes:
        parts += [notes, ""]
    if curve is not None:
        parts += ["## Learning curves", "", f"![test accuracy during training]({curve.name})", ""]
    parts += ["Numbers: `results.json`; per-step logs: `*/metrics.csv`; recipe as run: `recipe.yaml`.", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(parts))
    return path
