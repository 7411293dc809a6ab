"""Score-distillation reports: one table (references first) and the particles as scatter plots or
image grids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from distill.experiment.plots import plot_panels  # noqa: E402
from distill.experiment.plots import plot_turntables as plot_strips  # noqa: E402
from distill.experiment.table import Column, Table, number  # noqa: E402

HEADERS = {"swd": ("sliced W2", ".4g"), "mmd": ("MMD²", ".4g"), "fd": ("Fréchet dist.", ".4g"),
           "precision": ("precision", ".3f"), "recall": ("recall", ".3f"), "agreement": ("label agreement", ".3f"),
           "mode_distance": ("dist. to mode", ".3f"), "mode_spread": ("per-mode std", ".3f"),
           "modes_covered": ("modes", ".0f"), "out_of_range": ("pixels beyond ±1.1", ".4f"),
           "pixel_mean": ("pixel mean", ".3f"), "pixel_std": ("pixel std", ".3f"),
           "chamfer": ("Chamfer", ".4f"), "psnr": ("held-out PSNR dB", ".2f"), "ssim": ("held-out SSIM", ".3f"),
           "object": ("nearest mesh", "s"), "nfe": ("NFE / sample", ".0f"), "evaluations_per_step": ("prior evals / update", ".0f"),
           "seconds": ("train s", ".1f"), "peak_memory_mb": ("peak MB", ".0f")}
POINT_NOTES = ["The first row is an independent real draw scored like every other row: its distribution metrics "
         "are the noise floor, and a difference inside it is a tie.",
         "'initial state' is where the guidance started; 'prior' is the prior sampled by its own ODE, the "
         "best any guidance can reach under this prior.",
         "Peak MB is the process's peak resident memory on CPU (interpreter and libraries included)."]
SCENE_NOTES = ["Chamfer: mean nearest-neighbour distance between the object's visible surface (its depth maps from "
               "the held-out cameras, fused where opacity ≥ 0.5) and points on the true surface, both ways, halved; "
               "the mesh is scaled into the unit sphere.",
               "PSNR / SSIM: the object's renders against the mesh's own from held-out cameras the prior never saw.",
               "'initial state' is where every guidance started; 'reconstruction' fits the prior's own training views "
               "directly (photometric loss) with the same steps and optimiser: the upper bound.",
               "Peak MB is the process's peak resident memory on CPU (interpreter and libraries included)."]


def score_table(rows: Sequence, title: str, notes: Sequence[str]) -> Table:
    """Every row's metrics and cost, in the order of :data:`HEADERS`, the columns any row has."""
    present = [key for key in HEADERS if any(key in {**r.metrics, **r.cost} for r in rows)]
    columns = [Column("model", "model"), *(Column(key, HEADERS[key][0], number(HEADERS[key][1])) for key in present)]
    return Table(title, columns, [{"model": r.model, **r.metrics, **r.cost} for r in rows], list(notes))


def plot_turntables(rows: Sequence, path: Path) -> Path:
    """One strip per row: its turntable (B, 1, H, W) in [0, 1] side by side."""
    return plot_strips([(row.model, row.points) for row in rows], path)


def plot_points(rows: Sequence, path: Path) -> Path:
    """A scatter plot (2-D) or an image grid per row."""
    return plot_panels([(r.model, r.points) for r in rows], path)
