"""Training a many-step teacher: denoising diffusion or flow matching, on the same engine."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distill.diffusion.denoiser import Denoiser
from distill.errors import ConfigError


def null_labels(y: Tensor | None, num_classes: int, drop: float) -> Tensor | None:
    """``y`` with each label replaced by the null class ``num_classes`` with probability ``drop``."""
    if y is None or not num_classes or not drop:
        return y
    dropped = torch.rand(y.shape, device=y.device) < drop
    return torch.where(dropped, torch.full_like(y, num_classes), y)


def check_labels(y: Tensor, num_classes: int) -> None:
    """Refuse labels a conditional model has no embedding for."""
    if num_classes and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ConfigError(f"class-conditional model: labels must lie in 0..{num_classes - 1}, "
                          f"got {int(y.min())}..{int(y.max())}; set conditional: false for unlabeled data.")


class DenoisingObjective(nn.Module):
    """Regress the denoiser's parameterisation at uniform t: DDPM's ε-loss (Ho et al., 2020),
    v-loss (Salimans & Ho, 2022) or flow matching's velocity loss (Lipman et al., 2023).

    With ``cond_drop`` > 0 labels are dropped to the null class for classifier-free
    guidance (Ho & Salimans, 2022).
    """

    def __init__(self, denoiser: Denoiser, cond_drop: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= cond_drop < 1.0:
            raise ConfigError(f"cond_drop must lie in [0, 1), got {cond_drop}.")
        self.model, self.cond_drop = denoiser, cond_drop

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x, y = batch["x"], batch["y"]
        model = self.model
        check_labels(y, model.num_classes)
        t = torch.rand(len(x), device=x.device)
        eps = torch.randn_like(x)
        x_t = model.process.noise(x, eps, t)
        labels = null_labels(model.labels(y), model.num_classes, self.cond_drop)
        pred = model.net(x_t, t, labels)
        return {"loss": (pred - model.process.target(model.prediction, x, eps, t)).pow(2).mean()}
