"""Particles guided by a prior: the simplest object score distillation optimises.

``ParticlesObjective`` plugs into the engine like any other objective: batches are
``{"index"}`` rows of a :class:`~distill.data.TensorDictDataset` over particle indices,
the particles are one parameter group (``particles``) and VSD's online score another
(``fake``), each with its own learning rate and clipping from ``train.groups``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distill.data import TensorDictDataset
from distill.errors import ConfigError


class ParticlesObjective(nn.Module):
    """Move ``count`` particles (initialised from ``init``) by ``guidance`` under a frozen ``prior``;
    ``total_steps`` lets annealed noise schedules know the training progress."""

    def __init__(self, guidance, prior: nn.Module, init: Tensor, total_steps: int, y: Tensor | None = None) -> None:
        super().__init__()
        if total_steps < 1:
            raise ConfigError(f"total_steps must be >= 1, got {total_steps}.")
        self.guidance, self.prior = guidance, prior.eval().requires_grad_(False)
        self.particles = nn.Parameter(init.detach().clone().float())
        self.fake = guidance.fake_network(prior) if hasattr(guidance, "fake_network") else None
        self.register_buffer("labels", y if y is not None else torch.zeros(0, dtype=torch.long))
        self.total_steps, self.step = total_steps, 0

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {"particles": [self.particles]}
        if self.fake is not None:
            groups["fake"] = list(self.fake.parameters())
        return groups

    def after_optimizer_step(self, step: int) -> None:
        self.step = step

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        index = batch["index"]
        x = self.particles[index]
        y = self.labels[index] if len(self.labels) else None
        progress = self.step / self.total_steps
        extra = (self.fake,) if self.fake is not None else ()
        return self.guidance.loss(x, self.prior, *extra, y=y, progress=progress, index=index)

    @staticmethod
    def dataset(count: int) -> TensorDictDataset:
        """The particle indices the engine batches over."""
        return TensorDictDataset(index=torch.arange(count))
