"""Step-distillation reports: metric vs NFE table, samples as scatter plots or image grids, and generated
point sets as PLY files."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from distill.experiment.plots import plot_panels  # noqa: E402
from distill.experiment.table import Column, Table, number  # noqa: E402
from distill.metrics.scorer import SampleRow  # noqa: E402
from distill.scenes.io import write_ply_vertices  # noqa: E402

#: the folder of a point-set run's PLY files
CLOUDS_FOLDER = "clouds"

HEADLINE = {"swd": "sliced W2", "mmd": "MMD²", "fd": "Fréchet dist.", "precision": "precision",
            "recall": "recall", "agreement": "label agreement", "mmd_cd": "MMD-CD", "cov": "COV", "nna": "1-NNA"}
FLOOR_NOTE = "A difference smaller than the noise floor (two independent draws of real data) is a tie."
EXCESS_NOTE = ("excess: the headline distance left once the floor is removed (√(SW2² − floor²), √(FD − floor), "
               "√(MMD-CD − floor)), "
               "with its 95 % bootstrap interval; on the floor row, ± the floor's own bootstrap spread (1 sd).")


def excess_interval(row: dict) -> str | None:
    """``excess (low–high)`` of a scored row (None if it has none or diverged)."""
    if math.isnan(row.get("excess", math.nan)):
        return None
    return f"{row['excess']:.3g} ({row['excess_low']:.2g}–{row['excess_high']:.2g})"


def steps_table(rows: Sequence[SampleRow], floor: dict[str, float], title: str) -> Table:
    """The metric-vs-steps table: the noise floor first, then every scored row; with the excess over
    the floor and its interval when the rows have one."""
    metrics = [name for name in HEADLINE if name in floor]
    excess = "floor_spread" in floor
    columns = [Column("model", "model"), Column("steps", "steps"), Column("nfe", "NFE"),
               *(Column(name, HEADLINE[name], number(".4g")) for name in metrics),
               *([Column("excess_interval", "excess (95 % CI)")] if excess else []),
               Column("ms_per_sample", "ms / sample", number(".3f"))]
    body = [{"model": "real data (noise floor)", **floor,
             **({"excess_interval": f"± {floor['floor_spread']:.2g}"} if excess else {})}]
    body += [{"model": r.model, "steps": r.steps, "nfe": r.nfe, **r.metrics, "ms_per_sample": r.ms_per_sample,
              **({"excess_interval": excess_interval(r.metrics)} if excess else {})} for r in rows]
    return Table(title, columns, body, [FLOOR_NOTE, *([EXCESS_NOTE] if excess else [])])


def plot_samples(rows: Sequence[SampleRow], real, path: Path) -> Path:
    """Scatter plots (2-D data), image grids (images) or point clouds (point sets) of real data and each row's
    samples."""
    return plot_panels([("real (held out)", real), *((f"{r.model}, {r.steps} step(s)", r.samples) for r in rows)],
                       path)


def plot_metric_vs_nfe(rows: Sequence[SampleRow], floor: dict[str, float], path: Path) -> Path:
    """The headline metric against NFE for teacher and student, with the noise floor as a line."""
    metric = next(name for name in HEADLINE if name in floor)
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


def write_clouds(rows: Sequence[SampleRow], real, folder: Path) -> list[Path]:
    """The first generated point set of every row, and the first held-out one, as binary PLY point clouds
    (x, y, z; what MeshLab, CloudCompare and ``trimesh`` open): ``real.ply`` and ``<model>_<steps>step.ply``."""
    def write(name: str, cloud) -> Path:
        table = np.zeros(len(cloud), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
        for axis, values in zip("xyz", cloud.detach().float().cpu().numpy().T):
            table[axis] = values
        return write_ply_vertices(Path(folder) / f"{name}.ply", table, "distill generated point set")

    return [write("real", real[0]), *(write(f"{re.sub(r'[^a-z0-9]+', '_', r.model.lower()).strip('_')}_{r.steps}step",
                                            r.samples[0]) for r in rows)]
