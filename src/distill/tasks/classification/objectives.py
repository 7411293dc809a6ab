"""Classification objectives: ``forward(batch)`` on ``{"x", "y"}`` (and ``"teacher_x"`` for paired
sensor views) returns named scalars, ``"loss"`` among them."""

from __future__ import annotations

import torch
from torch import nn

from distill.augment import Mixup
from distill.distiller import Distiller
from distill.errors import ConfigError
from distill.losses import masked_cross_entropy
from distill.metrics.classification import batch_accuracy
from distill.signals import CachedTeacher
from distill.supervised import SupervisedObjective, mixup_cross_entropy

__all__ = ["DistillObjective", "SupervisedObjective"]


class DistillObjective(nn.Module):
    """Train the student of a :class:`Distiller`; with ``augment``, teacher and student see the same view.

    A batch with ``"teacher_x"`` holds paired views (see ``distill.data.views``): the
    student sees ``"x"``, the teacher ``"teacher_x"``; under mixup both views are blended
    with the same partners and weights.

    Mixed inputs have no single label, so under mixup the pairs' losses must be target-free
    and labels are not passed on to them (function matching, Beyer et al., CVPR 2022).
    ``task_weight`` adds the student's cross-entropy on the labels; on a mixed input that is
    mixup's cross-entropy against both labels, weighted by the sample's ``lam`` (Zhang et
    al., ICLR 2018), as the mixup scratch baseline trains.
    """

    def __init__(self, distiller: Distiller, augment: Mixup | None = None, task_weight: float = 0.0) -> None:
        super().__init__()
        self.distiller, self.augment, self.task_weight = distiller, augment, float(task_weight)
        if augment is not None and isinstance(distiller.teacher, CachedTeacher):
            raise ConfigError("a CachedTeacher serves only the exact inputs it cached, and augmentation makes new "
                              "ones; drop the augmentation or distil from the live teacher.")
        if augment is not None and not augment.keeps_labels:
            needing = [p.name for p in distiller.pairs if p.loss.needs_target]
            if needing or distiller.task_loss is not None:
                raise ConfigError(
                    f"augment 'mixup' mixes labels away, but {needing or ['task_loss']} need labels; use "
                    "target-free losses (e.g. 'kd' with alpha=1) and put the labels' weight in distill.task_weight, "
                    "or drop the augmentation."
                )

    @property
    def model(self) -> nn.Module:
        return self.distiller.student

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y, teacher_x = batch["x"], batch["y"], batch.get("teacher_x")
        target, mixed = y, None
        if self.augment is not None and self.training:
            if teacher_x is not None and self.augment.keeps_labels:
                raise ConfigError("paired sensor views take mixup (both views blended alike) or no augmentation; "
                                  "set distill.augment: mixup or none.")
            augmented = self.augment(x)
            x = augmented.x
            if teacher_x is not None:
                teacher_x = augmented.blend(teacher_x)
            if not self.augment.keeps_labels:
                target, mixed = None, augmented
        output = self.distiller(x, teacher_input=teacher_x)
        losses = self.distiller.compute_losses(target, output=output)
        if self.task_weight:
            losses["task"] = masked_cross_entropy(output, y) if mixed is None else mixup_cross_entropy(output, y, mixed)
            losses["total"] = losses["total"] + self.task_weight * losses["task"]
        result = {"loss": losses.pop("total"), **losses}
        if target is not None:
            result["acc"] = batch_accuracy(output.detach(), y)
        return result
