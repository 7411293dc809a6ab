"""What score distillation's results are measured by, beyond the shared distribution metrics:
mode coverage and spread (mode collapse), pixel statistics (over-saturation) and cost, and the row
that carries them into the table."""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass, field

import torch
from torch import Tensor

from distill.data.toys import EIGHT_GAUSSIAN_CENTRES

SATURATION_MARGIN = 0.1


@dataclass
class ScoreRow:
    """One scored object (real points, the initial state, the prior's samples, a guidance's result) and
    its metrics; ``points`` is what the figure shows (the points themselves, or a scene's turntable)."""

    model: str
    metrics: dict[str, float]
    points: Tensor = field(repr=False)
    cost: dict[str, float] = field(default_factory=dict)

#: toys whose modes are known points, for :func:`mode_statistics`
KNOWN_MODES = {"8gaussians": EIGHT_GAUSSIAN_CENTRES}


def mode_statistics(points: Tensor, centres: Tensor) -> dict[str, float]:
    """Mean distance to the nearest mode, the mean per-mode standard deviation (spread around that
    mode's own mean, averaged over the modes that hold at least two points) and how many modes hold a
    point: SDS is known to collapse the spread; VSD should keep the data's own."""
    nearest = torch.cdist(points, centres).min(dim=1)
    spreads = [points[nearest.indices == k].std(dim=0).mean() for k in range(len(centres))
               if int((nearest.indices == k).sum()) >= 2]
    return {"mode_distance": float(nearest.values.mean()),
            "mode_spread": float(torch.stack(spreads).mean()) if spreads else float("nan"),
            "modes_covered": int(len(nearest.indices.unique()))}


def pixel_statistics(images: Tensor) -> dict[str, float]:
    """Over-saturation, measured on images in the data range [−1, 1]: the share of pixels more than 0.1
    beyond it (SDS at high guidance pushes pixels past the range real data span; the margin keeps a
    background a hair below −1 from counting) and the mean and spread of the pixel values, to read
    beside the data's own."""
    flat = images.detach().float().flatten()
    return {"out_of_range": float((flat.abs() > 1.0 + SATURATION_MARGIN).float().mean()), "pixel_mean": float(flat.mean()),
            "pixel_std": float(flat.std())}


def peak_memory_mb(device: torch.device | str = "cpu") -> float:
    """Peak memory so far: allocated GPU memory on CUDA, else the process's peak resident set (which
    includes the interpreter and libraries: compare runs of one machine only)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
