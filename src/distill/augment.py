"""Batch augmentations shared by scratch training and distillation."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distill.errors import ConfigError


@dataclass
class MixedBatch:
    """Inputs mixed pairwise: ``x = lam·x + (1 − lam)·x[partner]``, one ``lam`` per sample."""

    x: torch.Tensor
    partner: torch.Tensor
    lam: torch.Tensor


class Mixup:
    """mixup (Zhang et al., ICLR 2018, "mixup: Beyond Empirical Risk Minimization").

    Each sample is blended with a random partner using its own ``lam ~ Beta(alpha, alpha)``.
    In distillation, teacher and student see the same mixed input, which is the
    "consistent" half of Beyer et al. (CVPR 2022), "Knowledge distillation: A good
    teacher is patient and consistent".
    """

    def __init__(self, alpha: float = 1.0) -> None:
        if not alpha > 0:
            raise ConfigError(f"mixup alpha must be > 0, got {alpha}.")
        self.alpha = float(alpha)

    def __call__(self, x: torch.Tensor) -> MixedBatch:
        batch = x.shape[0]
        concentration = torch.full((batch,), self.alpha)
        lam = torch.distributions.Beta(concentration, concentration).sample().to(x.device, x.dtype)
        partner = torch.randperm(batch).to(x.device)
        shape = (batch,) + (1,) * (x.dim() - 1)
        mixed = lam.view(shape) * x + (1 - lam.view(shape)) * x[partner]
        return MixedBatch(x=mixed, partner=partner, lam=lam)


def build_augment(name: str | None, alpha: float = 1.0) -> Mixup | None:
    """The batch augmentation called ``name`` ("none" or "mixup")."""
    if name in (None, "none"):
        return None
    if name == "mixup":
        return Mixup(alpha)
    raise ConfigError(f"unknown augment {name!r}; valid: 'none', 'mixup'.")
