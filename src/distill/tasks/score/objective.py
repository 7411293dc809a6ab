"""What every score-distillation objective shares: a guidance and a frozen prior, VSD's online score
as its own parameter group, and the training progress that annealed noise schedules read."""

from __future__ import annotations

from torch import Tensor, nn

from distill.errors import ConfigError


class GuidedObjective(nn.Module):
    """Base of the objectives that move an object by ``guidance`` under ``prior`` for ``total_steps``
    engine steps. Subclasses name their object's parameter group (``object_group``) and call
    :meth:`guided_loss` on what they render."""

    object_group = "object"

    def __init__(self, guidance, prior: nn.Module, total_steps: int) -> None:
        super().__init__()
        if total_steps < 1:
            raise ConfigError(f"total_steps must be >= 1, got {total_steps}.")
        self.guidance, self.prior = guidance, prior.eval().requires_grad_(False)
        self.fake = guidance.fake_network(prior) if hasattr(guidance, "fake_network") else None
        self.total_steps, self.step = total_steps, 0

    def object_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {self.object_group: self.object_parameters()}
        if self.fake is not None:
            groups["fake"] = list(self.fake.parameters())
        return groups

    def after_optimizer_step(self, step: int) -> None:
        self.step = step

    def guided_loss(self, x: Tensor, y: Tensor | None, index: Tensor) -> dict[str, Tensor]:
        """The guidance's losses on ``x`` (conditioned on ``y``; ``index`` names the particles)."""
        extra = (self.fake,) if self.fake is not None else ()
        return self.guidance.loss(x, self.prior, *extra, y=y, progress=self.step / self.total_steps, index=index)
