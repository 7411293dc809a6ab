"""Figures every generative family draws: panels of samples, as scatter plots (2-D), point clouds or image grids."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

#: point sets drawn per panel, side by side this far apart (the shipped meshes' clouds fit the unit sphere)
CLOUDS = 4
CLOUD_SPACING = 2.5


def image_grid(images: Tensor, count: int = 64) -> Tensor:
    """The first ``count`` images (B, C, H, W) tiled into one (C, side·H, side·W) square."""
    side = max(1, int(math.sqrt(min(count, len(images)))))
    c, h, w = images.shape[1:]
    tiles = images[: side * side].reshape(side, side, c, h, w)
    return tiles.permute(2, 0, 3, 1, 4).reshape(c, side * h, side * w)


def plot_panels(panels: Sequence[tuple[str, Tensor]], path: Path, limits: float = 3.5) -> Path:
    """One panel per ``(title, samples)``: a scatter plot of (N, 2) points within ±``limits``, the first
    :data:`CLOUDS` point sets (N, P, 3) side by side seen from the front (x across, z up, within ±1.25 of
    each set's origin), or a grid of the first 64 images (N, C, H, W) in [−1, 1]."""
    cols = min(4, len(panels))
    lines = math.ceil(len(panels) / cols)
    figure, axes = plt.subplots(lines, cols, figsize=(3.2 * cols, 3.2 * lines), squeeze=False)
    for axis, (title, samples) in zip(axes.flat, panels):
        samples = samples.detach().float().cpu()
        if samples.dim() == 2 and samples.shape[1] == 2:
            axis.scatter(samples[:, 0].numpy(), samples[:, 1].numpy(), s=1, alpha=0.4)
            axis.set_xlim(-limits, limits)
            axis.set_ylim(-limits, limits)
        elif samples.dim() == 3 and samples.shape[2] == 3:
            for i, cloud in enumerate(samples[:CLOUDS]):
                axis.scatter(cloud[:, 0].numpy() + CLOUD_SPACING * i, cloud[:, 2].numpy(), s=1, alpha=0.6)
            axis.set_xlim(-CLOUD_SPACING / 2, CLOUD_SPACING * (CLOUDS - 0.5))
            axis.set_ylim(-CLOUD_SPACING / 2, CLOUD_SPACING / 2)
            axis.set_aspect("equal")
        else:
            grid = image_grid(samples.clamp(-1, 1))
            axis.imshow(grid[0].numpy() if grid.shape[0] == 1 else grid.permute(1, 2, 0).add(1).div(2).numpy(),
                        cmap="gray", vmin=-1, vmax=1)
        axis.set_title(title, fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_turntables(strips: Sequence[tuple[str, Tensor]], path: Path) -> Path:
    """One titled strip per entry: its views (B, 1, H, W) in [0, 1] side by side (a turntable of an object)."""
    views = len(strips[0][1])
    figure, axes = plt.subplots(len(strips), 1, figsize=(1.2 * views, 1.35 * len(strips)), squeeze=False)
    for axis, (title, images) in zip(axes[:, 0], strips):
        axis.imshow(images[:, 0].float().cpu().permute(1, 0, 2).flatten(1).numpy(), cmap="gray", vmin=0, vmax=1)
        axis.set_title(title, fontsize=8, loc="left")
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
