"""Shortcut models: one network told its step size, trained so one step of 2d equals two of d."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from distill.diffusion.denoiser import Denoiser
from distill.diffusion.process import broadcast
from distill.diffusion.sampling import device_of, time_points
from distill.errors import ConfigError
from distill.models.base import frozen
from distill.tasks.steps.methods.base import STEP_METHODS, StepMethod, StepsContext, check_flow_velocity
from distill.tasks.steps.objectives import StudentObjective, check_ema_decay, flat_mean


def self_consistency_target(model: Denoiser, x_t: Tensor, t: Tensor, d: Tensor, y: Tensor | None) -> Tensor:
    """Velocity for one step of size 2d: the mean of two chained steps of size d (Frans et al., 2024, eq. 5)."""
    first = model(x_t, t, y, d)
    x_mid = x_t - broadcast(d, x_t) * first
    second = model(x_mid, t - d, y, d)
    return (first + second) / 2


class ShortcutObjective(StudentObjective):
    """Rows at the smallest step d = 1/min_step regress the teacher's velocity (flow-matching
    distillation; the reference code also trains its flow rows at the smallest step); a fraction
    ``consistency`` of rows (the reference's 1 in ``bootstrap_every`` = 4) learn step 2d from two
    steps of size d taken by the EMA of the student (``bootstrap_ema`` in the reference), at times
    on the multiples of 2d — the only points a 2d-step sampler visits."""

    def __init__(self, student: Denoiser, teacher: Denoiser, min_step: int, consistency: float,
                 ema_decay: float) -> None:
        super().__init__(student, ema_decay)
        self.teacher = frozen(teacher)
        self.levels, self.consistency = int(math.log2(min_step)), consistency

    def forward(self, data: dict[str, Tensor]) -> dict[str, Tensor]:
        x, y = data["x"], data["y"]
        batch = len(x)
        n_self = max(1, int(self.consistency * batch))
        # Consistency rows: d = 2^-j (j = 1..levels), t = 2d·k for k = 1..1/(2d), so t − 2d >= 0.
        d = 2.0 ** -torch.randint(1, self.levels + 1, (n_self,), device=x.device).float()
        t_self = 2 * d * torch.floor(torch.rand(n_self, device=x.device) / (2 * d) + 1)
        t_flow = torch.rand(batch - n_self, device=x.device)
        t = torch.cat([t_self, t_flow])
        x_t = self.model.process.noise(x, torch.randn_like(x), t)
        y_self, y_flow = (None, None) if y is None else (y[:n_self], y[n_self:])
        with torch.no_grad():
            target_self = self_consistency_target(self.ema, x_t[:n_self], t_self, d, y_self)
            x0, eps = self.teacher.split(x_t[n_self:], t_flow, y_flow)
            target_flow = self.teacher.process.velocity(x0, eps, t_flow)
        step = torch.cat([2 * d, torch.full_like(t_flow, 2.0 ** -self.levels)])
        pred = self.model(x_t, t, y, step)
        per_row = flat_mean((pred - torch.cat([target_self, target_flow])) ** 2)
        losses = {"self_consistency": per_row[:n_self].mean(), "flow": per_row[n_self:].mean()}
        total = (per_row[:n_self].sum() + per_row[n_self:].sum()) / batch
        return {"loss": total, **{k: v.detach() for k, v in losses.items()}}


class ShortcutGenerator:
    """Euler steps of size d = 1/steps, the network told d (Frans et al., 2024)."""

    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser = denoiser

    @property
    def device(self) -> torch.device:
        return device_of(self.denoiser)

    @torch.no_grad()
    def sample(self, noise: Tensor, y: Tensor | None, steps: int) -> Tensor:
        x = noise
        d = noise.new_full((noise.shape[0],), 1.0 / steps)
        for t in time_points(steps)[:-1]:
            x = x - (1.0 / steps) * self.denoiser(x, noise.new_full((noise.shape[0],), t), y, d)
        return x

    def evaluations(self, steps: int, y: Tensor | None = None) -> int:
        return steps * self.denoiser.evaluations_per_call(y)


@STEP_METHODS.register("shortcut")
class Shortcut(StepMethod):
    """Shortcut models (Frans, Hafner, Levine & Abbeel, 2024) distilled from a flow teacher: the
    teacher's step-conditioned copy learns step sizes 2^-j for j = 0..log2(min_step)."""

    def __init__(self, min_step: int = 128, consistency: float = 0.25, ema_decay: float = 0.999) -> None:
        if min_step < 2 or min_step & (min_step - 1):
            raise ConfigError(f"shortcut: min_step must be a power of two >= 2, got {min_step}.")
        if not 0.0 < consistency < 1.0:
            raise ConfigError(f"shortcut: consistency must lie in (0, 1), got {consistency}.")
        self.min_step, self.consistency = min_step, consistency
        self.ema_decay = check_ema_decay("shortcut", ema_decay)

    step_conditioned = True

    def check(self, teacher: Denoiser) -> None:
        check_flow_velocity(teacher, "shortcut")

    def train(self, context: StepsContext) -> dict[int, Denoiser]:
        self.check(context.teacher)
        objective = ShortcutObjective(context.student(step_conditioned=True), context.teacher, self.min_step,
                                      self.consistency, self.ema_decay)
        context.stage(objective, context.splits.train, "shortcut")
        return dict.fromkeys((1, 2, 4), context.for_sampling(objective.ema))

    def generator(self, denoiser: Denoiser) -> ShortcutGenerator:
        return ShortcutGenerator(denoiser)
