"""The ``dataset`` family's table, image grid of the synthetic set, and accuracy-vs-IPC plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

from distill.experiment.table import Column, Table, number  # noqa: E402


def _cell(result: dict | None) -> str | None:
    return None if result is None else f"{result['mean']:.1f} ± {result['std']:.1f}"


def _accuracy_columns(architectures: list[str]) -> list[Column]:
    return [Column("set", "set"), Column("labels", "labels"), Column("ipc", "IPC", number(".0f")),
            Column("augment", "eval aug"), *[Column(a, f"{a} acc %") for a in architectures]]


def _accuracy_row(name: str, labels: str, ipc: int, augment: bool, per_architecture: dict,
                  architectures: list[str]) -> dict:
    return {"set": name, "labels": labels, "ipc": ipc, "augment": "DSA" if augment else "none",
            **{a: _cell(per_architecture[a][augment]) for a in architectures}}


def _protocol_note(recipe) -> str:
    return (f"accuracy: {recipe.evaluate.networks} fresh networks per set and seed, trained {recipe.evaluate.epochs} "
            f"epochs (SGD, lr {recipe.evaluate.lr}, ×0.1 at half), scored once at the end — no checkpoint is chosen "
            f"on the test split; width {recipe.network.width}, depth {recipe.network.depth}")


def dataset_table(result: dict, recipe, title: str | None = None) -> Table:
    """One row per set and evaluation augmentation: accuracy (%) per architecture, mean ± std over every
    network of every seed; the gain over the random subset and the gap to the full data on the condensing one."""
    architectures, condensing = recipe.evaluate.architectures, recipe.network.name
    rows = []
    for labels, sets in (("hard", result["sets"]), ("teacher soft", result["soft_labels"])):
        for name, per_architecture in sets.items():
            for augment in recipe.evaluate.augment:
                own = per_architecture[condensing][augment]["mean"]
                random = sets["random"][condensing][augment]["mean"]
                rows.append({**_accuracy_row(name, labels, result["ipc"], augment, per_architecture, architectures),
                             "gain": None if name == "random" else own - random, "gap": result["full"]["mean"] - own})
    rows.append({"set": "full training set", "labels": "hard", "ipc": None, "augment": "none",
                 condensing: _cell(result["full"]), "gap": 0.0})
    columns = [*_accuracy_columns(architectures), Column("gain", f"gain over random ({condensing}, pts)", number("+.1f")),
               Column("gap", "gap to full (pts)", number(".1f"))]
    notes = [_protocol_note(recipe),
             "soft-label rows are reported apart, each beside a random subset with the same teacher's soft labels"]
    return Table(title or recipe.name, columns, rows, notes)


def set_table(name: str, result: dict, ipc: int, recipe, title: str) -> Table:
    """One set's accuracies (%) per architecture and evaluation augmentation (``distill eval``)."""
    architectures = list(result)
    rows = [_accuracy_row(name, "hard", ipc, augment, result, architectures) for augment in recipe.evaluate.augment]
    return Table(title, _accuracy_columns(architectures), rows, [_protocol_note(recipe)])


def plot_grid(images: Tensor, ipc: int, path: Path, max_per_class: int = 10) -> Path:
    """The synthetic set as a grid: one column per class, up to ``max_per_class`` rows."""
    per_class = images.detach().view(-1, ipc, *images.shape[1:])
    rows, classes = min(ipc, max_per_class), per_class.shape[0]
    fig, axes = plt.subplots(rows, classes, figsize=(classes * 0.9, rows * 0.9), squeeze=False)
    for c in range(classes):
        for r in range(rows):
            image = per_class[c, r]
            shown = image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)
            shown = (shown - shown.min()) / (shown.max() - shown.min()).clamp_min(1e-8)
            axes[r][c].imshow(shown.numpy(), cmap="gray" if image.shape[0] == 1 else None)
            axes[r][c].axis("off")
        axes[0][c].set_title(str(c), fontsize=8)
    fig.tight_layout(pad=0.1)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracy_vs_ipc(points: dict[str, dict[int, dict]], full: dict | None, path: Path, title: str) -> Path:
    """Test accuracy (mean ± std) against images per class, one line per set kind, the full data as a band."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, by_ipc in points.items():
        ipcs = sorted(by_ipc)
        if not ipcs:
            continue
        means = [by_ipc[i]["mean"] for i in ipcs]
        stds = [by_ipc[i]["std"] for i in ipcs]
        ax.errorbar(ipcs, means, yerr=stds, marker="o", ms=4, capsize=3, label=name)
    if full is not None:
        ax.axhspan(full["mean"] - full["std"], full["mean"] + full["std"], color="k", alpha=0.15)
        ax.axhline(full["mean"], color="k", ls="--", lw=1, label="full training set")
    ax.set(xscale="log", xlabel="images per class", ylabel="test accuracy (%)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
