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
from distill.tasks.score.objective import GuidedObjective


class ParticlesObjective(GuidedObjective):
    """Move ``count`` particles (initialised from ``init``) by ``guidance`` under a frozen ``prior``;
    ``total_steps`` lets annealed noise schedules know the training progress."""

    object_group = "particles"

    def __init__(self, guidance, prior: nn.Module, init: Tensor, total_steps: int, y: Tensor | None = None) -> None:
        super().__init__(guidance, prior, total_steps)
        self.particles = nn.Parameter(init.detach().clone().float())
        self.register_buffer("labels", y if y is not None else torch.zeros(0, dtype=torch.long))

    def object_parameters(self) -> list[nn.Parameter]:
        return [self.particles]

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        index = batch["index"]
        return self.guided_loss(self.particles[index], self.labels[index] if len(self.labels) else None, index)

    @staticmethod
    def dataset(count: int) -> TensorDictDataset:
        """The particle indices the engine batches over."""
        return TensorDictDataset(index=torch.arange(count))
