"""What one training step optimises: ``forward(x, y)`` returns named scalars, ``"loss"`` among them.

The engine is indifferent to the family: a classifier trained from scratch, a
``Distiller``, and later generators or synthetic data sets all plug in as objectives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill.augment import Mixup
from distill.distiller import Distiller
from distill.errors import ConfigError
from distill.losses.base import IGNORE_INDEX
from distill.losses.functional import masked_cross_entropy, masked_mean


def batch_accuracy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of labelled rows whose arg-max equals the label."""
    labelled = target != IGNORE_INDEX
    return masked_mean((logits.argmax(dim=-1) == target).float(), labelled)


def mixup_cross_entropy(logits: torch.Tensor, target: torch.Tensor, mixed) -> torch.Tensor:
    """Cross-entropy against both labels of a mixed sample, weighted by its ``lam`` (Zhang et al., 2018)."""
    logits = logits.float()
    partner = target[mixed.partner]
    both = (target != IGNORE_INDEX) & (partner != IGNORE_INDEX)
    ce = F.cross_entropy(logits, target.clamp(min=0), reduction="none")
    ce_partner = F.cross_entropy(logits, partner.clamp(min=0), reduction="none")
    return masked_mean(mixed.lam * ce + (1 - mixed.lam) * ce_partner, both)


class SupervisedObjective(nn.Module):
    """Train ``model`` on labels alone, optionally with mixup: the from-scratch baseline."""

    def __init__(self, model: nn.Module, augment: Mixup | None = None) -> None:
        super().__init__()
        self.model, self.augment = model, augment

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.augment is not None and self.training:
            mixed = self.augment(x)
            return {"loss": mixup_cross_entropy(self.model(mixed.x), y, mixed)}
        logits = self.model(x)
        return {"loss": masked_cross_entropy(logits, y), "acc": batch_accuracy(logits.detach(), y)}


class DistillObjective(nn.Module):
    """Train the student of a :class:`Distiller`; with ``augment``, teacher and student see the same view.

    ``student_width``: batches hold paired views (see ``distill.data.views``); the
    student gets the first ``student_width`` channels, the teacher the rest.

    Mixed inputs have no single label, so under mixup every target-free loss is used
    and labels are not passed on (function matching, Beyer et al., CVPR 2022).
    """

    def __init__(self, distiller: Distiller, augment: Mixup | None = None, student_width: int | None = None) -> None:
        super().__init__()
        self.distiller, self.augment, self.student_width = distiller, augment, student_width
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

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        target = y
        if self.augment is not None and self.training:
            x, target = self.augment(x).x, (y if self.augment.keeps_labels else None)
        teacher_x = None
        if self.student_width is not None:  # paired views: the student's channels come first
            x, teacher_x = x[:, : self.student_width], x[:, self.student_width :]
        output = self.distiller(x, teacher_input=teacher_x)
        losses = self.distiller.compute_losses(target, output=output)
        result = {"loss": losses.pop("total"), **losses}
        if target is not None:
            result["acc"] = batch_accuracy(output.detach(), y)
        return result
