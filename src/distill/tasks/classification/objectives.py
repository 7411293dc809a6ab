"""Classification objectives: ``forward(batch)`` on ``{"x", "y"}`` (and ``"teacher_x"`` for paired
sensor views) returns named scalars, ``"loss"`` among them."""

from __future__ import annotations

import torch
from torch import nn

from distill.augment import Mixup
from distill.distiller import Distiller
from distill.errors import ConfigError
from distill.metrics.classification import batch_accuracy
from distill.signals import CachedTeacher
from distill.supervised import SupervisedObjective

__all__ = ["DistillObjective", "SupervisedObjective"]


class DistillObjective(nn.Module):
    """Train the student of a :class:`Distiller`; with ``augment``, teacher and student see the same view.

    A batch with ``"teacher_x"`` holds paired views (see ``distill.data.views``): the
    student sees ``"x"``, the teacher ``"teacher_x"``.

    Mixed inputs have no single label, so under mixup every target-free loss is used
    and labels are not passed on (function matching, Beyer et al., CVPR 2022).
    """

    def __init__(self, distiller: Distiller, augment: Mixup | None = None) -> None:
        super().__init__()
        self.distiller, self.augment = distiller, augment
        if augment is not None and isinstance(distiller.teacher, CachedTeacher):
            raise ConfigError("a CachedTeacher serves only the exact inputs it cached, and augmentation makes new "
                              "ones; drop the augmentation or distil from the live teacher.")
        if augment is not None and not augment.keeps_labels:
            needing = [p.name for p in distiller.pairs if p.loss.needs_target]
            if needing or distiller.task_loss is not None:
                raise ConfigError(
                    f"augment 'mixup' mixes labels away, but {needing or ['task_loss']} need labels; "
                    "drop the augmentation or use target-free losses (e.g. 'kd' with alpha=1)."
                )

    @property
    def model(self) -> nn.Module:
        return self.distiller.student

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y, teacher_x = batch["x"], batch["y"], batch.get("teacher_x")
        target = y
        if self.augment is not None and self.training:
            if teacher_x is not None:
                raise ConfigError("augmentation of paired sensor views is not supported; set distill.augment: none.")
            x, target = self.augment(x).x, (y if self.augment.keeps_labels else None)
        output = self.distiller(x, teacher_input=teacher_x)
        losses = self.distiller.compute_losses(target, output=output)
        result = {"loss": losses.pop("total"), **losses}
        if target is not None:
            result["acc"] = batch_accuracy(output.detach(), y)
        return result
