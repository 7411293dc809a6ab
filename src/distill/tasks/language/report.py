"""The ``language`` family's table, perplexity curve and samples section."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from distill.experiment.table import Column, Table, number  # noqa: E402


def language_table(rows: list[dict], title: str, notes: list[str] | None = None) -> Table:
    """Held-out perplexity, bits per character, top-1 agreement with the teacher and KL(teacher ‖ student) per model."""
    return Table(title, [Column("model", "model"), Column("parameters", "params", number(".3g", 1e-6, "M")),
                         Column("tokens", "train tokens", number(",.0f")), Column("perplexity", "held-out ppl", number(".1f")),
                         Column("bits_per_char", "bits/char", number(".3f")),
                         Column("agreement", "top-1 agree", number(".1%")), Column("kl", "KL(t‖s)", number(".3f"))],
                 rows, notes or [])


def draw_curves(ax, curves: dict[str, list[dict]], teacher_perplexity: float | None = None,
                title: str | None = None, key: str = "perplexity") -> None:
    """Held-out perplexity (or another ``key`` of the curves' points: ``bits_per_char``) against training
    tokens on ``ax``, one line per student (log scale)."""
    name = key.replace("_", " ").replace("per char", "per character")
    for label, curve in curves.items():
        ax.plot([p["tokens"] for p in curve], [p[key] for p in curve], marker="o", ms=3, label=label)
    if teacher_perplexity is not None:
        ax.axhline(teacher_perplexity, color="k", ls="--", lw=1, label="teacher")
    ax.set(xlabel="training tokens", ylabel=f"held-out {name}", yscale="log",
           title=title or f"{name.capitalize()} during training")
    ax.legend(fontsize=8)


def plot_curves(curves: dict[str, list[dict]], path: Path, teacher_perplexity: float | None = None,
                key: str = "perplexity") -> Path | None:
    """Held-out perplexity (or another ``key``) against training tokens, one line per student (log scale)."""
    if not any(curves.values()):
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    draw_curves(ax, curves, teacher_perplexity, key=key)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def samples_markdown(samples: dict) -> str:
    """Teacher and student continuations of the same prompts, as Markdown."""
    parts = ["## Samples (greedy, same prompts)", ""]
    for prompt, teacher, student in zip(samples["prompts"], samples["teacher"], samples["student"]):
        parts += [f"**Prompt:** `{prompt!r}`", "", "Teacher:", "", "```", teacher, "```", "", "Student:", "", "```",
                  student, "```", ""]
    return "\n".join(parts)


def save_evaluation(table: Table, stem: Path, details: dict) -> None:
    """An evaluation beside the run's results: ``<stem>.json`` (the table as in ``results.json``, and
    ``details``) and ``<stem>.md``; the table gets a note naming both."""
    json_file, markdown_file = Path(f"{stem}.json"), Path(f"{stem}.md")
    table.notes.append(f"written to {json_file} and {markdown_file}")
    json_file.write_text(json.dumps({**table.to_json(), "details": details}, indent=1, default=float))
    markdown_file.write_text(f"# {table.title}\n\n{table.markdown()}\n")
