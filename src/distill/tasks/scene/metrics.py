"""What a scene run's rows are measured by beyond the shared image and 3-D metrics: the eval curve of
held-out PSNR against training wall time, when it first reaches a target, and render time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from distill.scenes import OrbitCameras, Representation, image_metrics


@dataclass
class SceneRow:
    """One scored representation (teacher, baseline or student): its metrics, its cost, and the
    turntable (B, 1, H, W) in [0, 1] the figure shows."""

    model: str
    metrics: dict[str, float | str | None]
    turntable: Tensor = field(repr=False)
    cost: dict[str, float | None] = field(default_factory=dict)


class EvalCurve:
    """An engine evaluator: the held-out PSNR against ``truth`` (renders from ``cameras``) at every
    evaluation, beside the training wall time so far — from the objective's first forward pass (see
    :meth:`watch`), less the time spent evaluating, plus ``offset`` seconds of work done before training
    (e.g. rendering a teacher's views)."""

    def __init__(self, truth: Tensor, cameras: OrbitCameras, size: int, background: float = 0.0,
                 offset: float = 0.0) -> None:
        self.truth, self.cameras, self.size, self.background, self.offset = truth, cameras, size, background, offset
        self.points: list[dict[str, float]] = []
        self._started: float | None = None
        self.evaluation_seconds = 0.0

    def watch(self, objective: nn.Module):
        """Start the clock at ``objective``'s first forward pass (the training loop's first step, after the
        engine's set-up); returns the hook's handle, to remove it after training."""

        def start(module, args) -> None:
            if self._started is None:
                self._started = time.perf_counter()

        return objective.register_forward_pre_hook(start)

    def __call__(self, scene: Representation, accelerator=None) -> dict[str, float]:
        began = time.perf_counter()
        if self._started is None:
            self._started = began
        psnr = image_metrics(scene, self.truth, self.cameras, self.size, self.background)["psnr"]
        self.points.append({"seconds": began - self._started - self.evaluation_seconds + self.offset, "psnr": psnr})
        self.evaluation_seconds += time.perf_counter() - began
        return {"held_out_psnr": psnr}

    def seconds_to_reach(self, psnr: float) -> float | None:
        """The training seconds at the first evaluation whose PSNR is at least ``psnr``; None if none is."""
        return next((p["seconds"] for p in self.points if p["psnr"] >= psnr), None)


@torch.no_grad()
def render_seconds(scene: Representation, cameras: OrbitCameras, size: int, repeats: int = 3) -> float:
    """Seconds per view to render ``cameras`` (the best of ``repeats`` timed renders of all of them)."""
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        scene.render(cameras, size)
        best = min(best, time.perf_counter() - began)
    return best / len(cameras)


def mean_iou(predicted: Tensor, truth: Tensor, classes: int) -> float:
    """The mean over parts ``1..classes−1`` (0 is the background) of the intersection over union of the
    pixels ``predicted`` and ``truth`` give each part, over all views at once; parts neither has are skipped."""
    ious = []
    for part in range(1, classes):
        mine, theirs = predicted == part, truth == part
        union = int((mine | theirs).sum())
        if union:
            ious.append(int((mine & theirs).sum()) / union)
    return sum(ious) / len(ious) if ious else float("nan")


def feature_cosine(features: Tensor, target: Tensor, mask: Tensor) -> float:
    """The mean cosine similarity of ``features`` and ``target`` ``(B, C, H, W)`` over the pixels where ``mask``
    ``(B, H, W)`` is true (where the object is)."""
    cosine = torch.nn.functional.cosine_similarity(features.float(), target.float(), dim=1, eps=1e-8)
    return float(cosine[mask].mean()) if mask.any() else float("nan")
