"""Scene reports: one table (teacher first, then the baselines, the student last), the turntable strip
of every row beside the true mesh, and the eval curves of held-out PSNR against training time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from distill.experiment.plots import plot_turntables as plot_strips  # noqa: E402
from distill.experiment.table import Column, Table, number  # noqa: E402
from distill.tasks.scene.metrics import SceneRow  # noqa: E402

HEADERS = {"representation": ("representation", "s"), "params": ("params", ",.0f"), "gaussians": ("Gaussians", ".0f"),
           "channels": ("channels", ".0f"), "miou": ("part mIoU", ".3f"), "cosine": ("feature cosine", ".3f"),
           "psnr": ("PSNR vs mesh dB", ".2f"), "ssim": ("SSIM vs mesh", ".3f"),
           "psnr_teacher": ("PSNR vs teacher dB", ".2f"), "ssim_teacher": ("SSIM vs teacher", ".3f"),
           "chamfer": ("Chamfer", ".4f"), "seconds": ("train s", ".1f"),
           "seconds_to_target": ("s to teacher − margin", ".1f"), "render_ms": ("render ms / view", ".2f")}
NOTES = ["PSNR / SSIM: renders from held-out cameras (an orbit between the training azimuths, never trained on) "
         "against the mesh's own renders, and against the teacher's renders from the same cameras.",
         "Chamfer: mean nearest-neighbour distance between the visible surface (depth maps from the held-out "
         "cameras, fused where opacity ≥ 0.5) and points on the true surface, both ways, halved; the mesh is "
         "scaled into the unit sphere.",
         "train s: wall seconds of training, including work done for it before the first step (rendering the "
         "teacher's views, pruning) and excluding the evaluations; 's to teacher − margin': the training seconds "
         "at the first evaluation whose held-out PSNR reached the teacher's less the margin ('–': never within the "
         "budget). Every student row has the same step budget and starts from the same seed.",
         "render ms / view: the best of a few timed renders of the held-out views on this machine."]
#: notes shown only when their column is in the table (a feature-field run's)
COLUMN_NOTES = {"miou": "part mIoU: at the held-out views, the intersection over union of each of the mesh's parts "
                        "(k-means of its faces; the background is not a part) between the true part map and the "
                        "prediction — the 2-D segmenter's on the mesh's own renders, a lifted field's the argmax of "
                        "its rendered logits — pooled over the views and averaged over the parts. For the segmenter, "
                        "params are its weights and render ms its forward pass on the mesh's renders, or the teacher's "
                        "render plus that pass; for a field, params are its features, background and decoder (the "
                        "geometry is the teacher's).",
                "cosine": "feature cosine: the cosine of a lifted field's rendered (and decoded) features, or of the "
                          "segmenter's on the teacher's renders, to the segmenter's at the tap on the mesh's renders, "
                          "averaged over the pixels the mesh covers."}


def scene_table(rows: Sequence[SceneRow], title: str, margin_db: float) -> Table:
    """Every row's metrics and cost, in the order of :data:`HEADERS`, the columns any row has."""
    present = [key for key in HEADERS if any({**r.metrics, **r.cost}.get(key) is not None for r in rows)]
    headers = {**HEADERS, "seconds_to_target": (f"s to teacher − {margin_db:g} dB", ".1f")}
    columns = [Column("model", "model"), *(Column(key, headers[key][0], number(headers[key][1])) for key in present)]
    notes = list(NOTES) + [note for key, note in COLUMN_NOTES.items() if key in present]
    return Table(title, columns, [{"model": r.model, **r.metrics, **r.cost} for r in rows], notes)


def plot_turntables(rows: Sequence[SceneRow], path: Path) -> Path:
    """One strip per row: its turntable (B, 1, H, W) in [0, 1] side by side."""
    return plot_strips([(row.model, row.turntable) for row in rows], path)


def plot_curves(curves: dict[str, list[dict]], target: float, path: Path) -> Path:
    """Held-out PSNR against training seconds, one line per curve, with the target as a dashed line."""
    figure, axis = plt.subplots(figsize=(5, 3.4))
    for label, points in curves.items():
        axis.plot([p["seconds"] for p in points], [p["psnr"] for p in points], marker=".", label=label)
    axis.axhline(target, linestyle="--", color="grey", label="teacher − margin")
    axis.set_xlabel("training seconds")
    axis.set_ylabel("held-out PSNR vs mesh (dB)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
