"""Training a classifier on its labels alone (optionally with mixup): teachers, from-scratch
baselines and the feature classifiers of generative metrics all use it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill.augment import Mixup
from distill.losses.base import IGNORE_INDEX
from distill.losses.functional import masked_cross_entropy, masked_mean
from distill.metrics.classification import batch_accuracy


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

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch["x"], batch["y"]
        if self.augment is not None and self.training:
            mixed = self.augment(x)
            return {"loss": mixup_cross_entropy(self.model(mixed.x), y, mixed)}
        logits = self.model(x)
        return {"loss": masked_cross_entropy(logits, y), "acc": batch_accuracy(logits.detach(), y)}
