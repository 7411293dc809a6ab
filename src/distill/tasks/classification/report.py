"""The classification results table (accuracy, size, latency, budget), its notes, and learning-curve plot;
the trials of ``distill tune`` as a table and a plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from distill.experiment.table import Column, Table, number  # noqa: E402

COLUMNS = (
    Column("name", "model"),
    Column("acc", "test acc", number(".2f", 100, " %")),
    Column("params", "params", lambda v: f"{int(v):,}"),
    Column("latency_ms", "CPU latency / sample", number(".1f", 1000, " µs")),
    Column("steps", "train steps", lambda v: str(v) if v else "cached"),
    Column("seconds", "train time", number(".0f", 1, " s")),
)


def results_table(rows: Sequence, title: str, notes: Sequence[str] = ()) -> Table:
    """The rows (``RowResult``) as a :class:`Table`; a cached phase shows no train time. ``notes`` (e.g. the
    defaults a run filled in), a given teacher, and a teacher no better than the student trained alone, are
    said so in notes (printed, and in ``report.md``)."""
    body = [{"name": r.name, "acc": r.acc, "params": r.params, "latency_ms": r.latency_ms, "steps": r.steps,
             "seconds": r.seconds if r.steps else None, "samples_per_s": r.samples_per_s} for r in rows]
    notes = [*notes, *given_teacher_notes(rows), weak_teacher_note(rows)]
    return Table(title, COLUMNS, body, notes=[note for note in notes if note])


def given_teacher_notes(rows: Sequence) -> list[str]:
    """One note per teacher that came with its weights and was not trained by the run."""
    return [f"Note: the {r.name} came with its weights ({r.given}) and was not trained by this run; its "
            "accuracy is measured on this run's test split." for r in rows if r.role == "teacher" and r.given]


def weak_teacher_note(rows: Sequence) -> str | None:
    """What to change when the teacher the student learns from (the combined one, if several) scores no
    higher than the best student trained alone: distillation passes on only what the teacher knows better."""
    teachers = [r for r in rows if r.role == "combined"] or [r for r in rows if r.role == "teacher"]
    scratch = [r for r in rows if r.role == "scratch"]
    if len(teachers) != 1 or not scratch:
        return None
    teacher, best = teachers[0], max(scratch, key=lambda r: r.acc)
    if teacher.acc > best.acc:
        return None
    return (f"Note: the {teacher.name} ({100 * teacher.acc:.2f} %) is not above the {best.name} trained alone "
            f"({100 * best.acc:.2f} %), so it has little to teach: train the teacher longer (its `train.steps`), "
            "use a bigger teacher, or check the data (labels, train/test split, input scaling).")


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


#: the columns of a ``distill tune`` trial row that are not knobs of its method
TRIAL_FIELDS = ("trial", "state", "method", "val_acc", "step", "lr", "seconds", "error")


def setting_text(row: dict) -> str:
    """A trial's knobs as ``temperature 2.31, alpha 0.71``."""
    return ", ".join(f"{key} {value:.3g}" for key, value in row.items() if key not in TRIAL_FIELDS and value is not None)


def trials_table(rows: Sequence[dict], title: str) -> Table:
    """The trials of ``distill tune`` (rows of ``trials.csv``): method, knobs, learning rate, validation
    accuracy, how the trial ended, time."""
    state = {"complete": "done", "pruned": "pruned at step {step}", "fail": "failed"}
    body = [{**row, "setting": setting_text(row) or None, "end": state[row["state"]].format(step=row["step"])}
            for row in rows]
    columns = (Column("trial", "trial"), Column("method", "method"), Column("setting", "knobs"),
               Column("lr", "lr", number(".3g")), Column("val_acc", "val acc", number(".2f", 100, " %")),
               Column("end", "end"), Column("seconds", "time", number(".0f", 1, " s")))
    return Table(title, columns, body)


def plot_trials(rows: Sequence[dict], scratch: dict[str, float], path: Path) -> Path:
    """Validation accuracy of each trial against its number (a cross where it was pruned, at its last
    report), the best so far, and one dashed line per scratch baseline."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for method in dict.fromkeys(row["method"] for row in rows if row["state"] == "complete"):
        points = [(row["trial"], 100 * row["val_acc"]) for row in rows
                  if row["method"] == method and row["state"] == "complete"]
        ax.scatter(*zip(*points), label=method, zorder=3)
    pruned = [(row["trial"], 100 * row["val_acc"]) for row in rows if row["state"] == "pruned" and row["val_acc"]]
    if pruned:
        ax.scatter(*zip(*pruned), marker="x", color="gray", label="pruned (last report)", zorder=2)
    best, front = -math.inf, []
    for row in sorted(rows, key=lambda r: r["trial"]):
        if row["state"] == "complete":
            best = max(best, 100 * row["val_acc"])
        if best > -math.inf:
            front.append((row["trial"], best))
    if front:
        ax.step(*zip(*front), where="post", color="black", linewidth=1, label="best so far")
    for (augment, acc), style in zip(scratch.items(), ("--", ":", "-.")):
        ax.axhline(100 * acc, linestyle=style, color="tab:red", label=f"scratch{'' if augment == 'none' else ', ' + augment}")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
