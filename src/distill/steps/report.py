"""Step-distillation reports: metric vs NFE table, samples as scatter plots or image grids."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from distill.steps.evaluate import SampleRow, Scorer  # noqa: E402

HEADLINE = {"swd": "sliced W2", "mmd": "MMD²", "fd": "Fréchet dist.", "precision": "precision",
            "recall": "recall", "agreement": "label agreement"}


def _table(rows: Sequence[SampleRow], floor: dict[str, float]) -> tuple[list[str], list[list[str]]]:
    names = list(floor)
    header = ["model", "steps", "NFE", *(HEADLINE[n] for n in names), "ms / sample"]
    body = [["real data (noise floor)", "–", "–", *(f"{floor[n]:.4g}" for n in names), "–"]]
    body += [[r.model, str(r.steps), str(r.nfe), *(f"{r.metrics.get(n, math.nan):.4g}" for n in names),
              f"{r.ms_per_sample:.3f}"] for r in rows]
    return header, body


def print_steps_table(rows: Sequence[SampleRow], floor: dict[str, float], title: str,
                      console: Console | None = None) -> None:
    """The metric-vs-steps table on the terminal."""
    header, body = _table(rows, floor)
    table = Table(title=title)
    for name in header:
        table.add_column(name)
    for line in body:
        table.add_row(*line)
    (console or Console()).print(table)


def plot_samples(rows: Sequence[SampleRow], real, path: Path) -> Path:
    """Scatter plots (2-D data) or image grids (images) of real data and each row's samples."""
    panels = [("real (held out)", real), *((f"{r.model}, {r.steps} step(s)", r.samples) for r in rows)]
    cols = min(4, len(panels))
    lines = math.ceil(len(panels) / cols)
    figure, axes = plt.subplots(lines, cols, figsize=(3.2 * cols, 3.2 * lines), squeeze=False)
    for axis, (title, samples) in zip(axes.flat, panels):
        samples = samples.detach().float()
        if samples.dim() == 2 and samples.shape[1] == 2:
            axis.scatter(samples[:, 0].numpy(), samples[:, 1].numpy(), s=1, alpha=0.4)
            axis.set_xlim(-3.5, 3.5)
            axis.set_ylim(-3.5, 3.5)
        else:
            grid = samples[:64].clamp(-1, 1)
            side = int(math.sqrt(len(grid)))
            c, h, w = grid.shape[1:]
            tiles = grid[: side * side].reshape(side, side, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, side * h, side * w)
            axis.imshow(tiles[0].numpy(), cmap="gray", vmin=-1, vmax=1)
        axis.set_title(title, fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_metric_vs_nfe(rows: Sequence[SampleRow], floor: dict[str, float], path: Path) -> Path:
    """The headline metric against NFE for teacher and student, with the noise floor as a line."""
    metric = next(iter(floor))
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for model in dict.fromkeys(r.model for r in rows):
        points = sorted((r.nfe, r.metrics[metric]) for r in rows if r.model == model)
        axis.plot(*zip(*points), marker="o", label=model)
    axis.axhline(floor[metric], color="gray", linestyle="--", label="noise floor (real vs real)")
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xlabel("network evaluations per sample (NFE)")
    axis.set_ylabel(HEADLINE[metric])
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_steps_report(rows: Sequence[SampleRow], scorer: Scorer, run_dir: Path, title: str) -> Path:
    """report.md with the table and both plots under ``run_dir``."""
    header, body = _table(rows, scorer.floor)
    samples = plot_samples(rows, scorer.real, run_dir / "samples.png")
    curve = plot_metric_vs_nfe(rows, scorer.floor, run_dir / "metric_vs_nfe.png")
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    lines += ["", "A difference smaller than the noise floor (two independent draws of real data) is a tie.",
              "", f"![samples]({samples.name})", "", f"![metric vs NFE]({curve.name})", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
