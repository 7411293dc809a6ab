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

    def blend(self, other: torch.Tensor) -> torch.Tensor:
        """``other`` (another view of the same samples, e.g. the teacher's sensor channels) mixed with the same
        partners and weights, so the two views stay views of one blended sample."""
        shape = (other.shape[0],) + (1,) * (other.dim() - 1)
        lam = self.lam.to(other.device, other.dtype).view(shape)
        return lam * other + (1 - lam) * other[self.partner.to(other.device)]


class Mixup:
    """mixup (Zhang et al., ICLR 2018, "mixup: Beyond Empirical Risk Minimization").

    Each sample is blended with a random partner using its own ``lam ~ Beta(alpha, alpha)``.
    In distillation, teacher and student see the same mixed input, which is the
    "consistent" half of Beyer et al. (CVPR 2022), "Knowledge distillation: A good
    teacher is patient and consistent".
    """

    keeps_labels = False

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


class Jitter:
    """Random translation of each image by up to ``pixels`` in each direction, zero-filled.

    The ±2 px jitter of Hinton, Vinyals & Dean (2015) for MNIST. Labels are kept:
    the result is a :class:`MixedBatch` whose partner is the sample itself.
    """

    keeps_labels = True

    def __init__(self, pixels: int = 2) -> None:
        if pixels < 1:
            raise ConfigError(f"jitter pixels must be >= 1, got {pixels}.")
        self.pixels = int(pixels)

    def __call__(self, x: torch.Tensor) -> MixedBatch:
        if x.dim() != 4:
            raise ConfigError(f"jitter shifts images (B, C, H, W); got inputs of shape {tuple(x.shape)}.")
        p, (batch, _, height, width) = self.pixels, x.shape
        padded = torch.nn.functional.pad(x, (p, p, p, p)).permute(0, 2, 3, 1)  # B, H+2p, W+2p, C
        dy, dx = torch.randint(0, 2 * p + 1, (2, batch, 1), device=x.device)
        rows = (torch.arange(height, device=x.device) + dy)[:, :, None]
        cols = (torch.arange(width, device=x.device) + dx)[:, None, :]
        shifted = padded[torch.arange(batch, device=x.device)[:, None, None], rows, cols].permute(0, 3, 1, 2)
        return MixedBatch(x=shifted.contiguous(), partner=torch.arange(batch, device=x.device),
                          lam=torch.ones(batch, device=x.device, dtype=x.dtype))


def build_augment(name: str | None, alpha: float = 1.0) -> Mixup | Jitter | None:
    """The batch augmentation called ``name`` ("none", "mixup" or "jitter")."""
    if name in (None, "none"):
        return None
    if name == "mixup":
        return Mixup(alpha)
    if name == "jitter":
        return Jitter(2)
    raise ConfigError(f"unknown augment {name!r}; valid: 'none', 'mixup', 'jitter'.")
