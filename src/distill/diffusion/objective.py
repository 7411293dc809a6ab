"""Training a many-step teacher: denoising diffusion or flow matching, on the same engine."""

from __future__ import annotations

from torch import Tensor, nn

from distill.diffusion.cfg import drop_labels
from distill.diffusion.denoiser import Denoiser
from distill.engine import draws
from distill.errors import ConfigError


def denoising_loss(denoiser: Denoiser, x: Tensor, y: Tensor | None = None, drop: float = 0.0,
                   t: Tensor | None = None) -> Tensor:
    """The mean squared error of ``denoiser``'s network against its parameterisation's target
    (:meth:`Process.target`) at ``x`` noised to times ``t`` (uniform in [0, 1] unless given), with
    class labels dropped to the null class with probability ``drop`` (classifier-free guidance).
    Trains a teacher, DMD's fake score and VSD's online score alike."""
    if t is None:
        t = draws.rand(len(x), x.device)
    eps = draws.randn_like(x)
    x_t = denoiser.process.noise(x, eps, t)
    labels = denoiser.labels(y)
    if labels is not None and denoiser.num_classes:
        labels = drop_labels(labels, drop)
    pred = denoiser.net(x_t, t, labels)
    return (pred - denoiser.process.target(denoiser.prediction, x, eps, t)).pow(2).mean()


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
        check_labels(batch["y"], self.model.num_classes)
        return {"loss": denoising_loss(self.model, batch["x"], batch["y"], self.cond_drop)}
