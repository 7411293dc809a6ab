"""Progressive distillation: each round, one student step replaces two teacher steps."""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from distill.diffusion.denoiser import Denoiser
from distill.diffusion.process import broadcast
from distill.diffusion.sampling import OdeGenerator
from distill.engine import draws
from distill.errors import ConfigError
from distill.models.base import frozen
from distill.tasks.steps.methods.base import STEP_METHODS, StepMethod, StepsContext
from distill.tasks.steps.objectives import StudentObjective, check_ema_decay, flat_mean


def two_step_target(teacher: Denoiser, x_t: Tensor, t: Tensor, s: Tensor, y: Tensor | None) -> Tensor:
    """The x0 a single DDIM step t → s must predict to land where two teacher DDIM steps land
    (Salimans & Ho, ICLR 2022, Algorithm 2): ``x̃ = (z_s − (σ_s/σ_t) z_t) / (α_s − (σ_s/σ_t) α_t)``."""
    process = teacher.process
    mid = (t + s) / 2
    z = x_t
    for start, end in ((t, mid), (mid, s)):
        x0, eps = teacher.split(z, start, y)
        z = process.noise(x0, eps, end)
    alpha_t, sigma_t, _, _ = (broadcast(c, x_t) for c in process.coefficients(t))
    alpha_s, sigma_s, _, _ = (broadcast(c, x_t) for c in process.coefficients(s))
    ratio = sigma_s / sigma_t
    return (z - ratio * x_t) / (alpha_s - ratio * alpha_t)


class ProgressiveObjective(StudentObjective):
    """One round: a ``steps``-step DDIM student matches a ``2·steps``-step DDIM teacher, with the
    truncated-SNR weight ``max(α²/σ², 1)`` on the x0 error (Salimans & Ho, 2022)."""

    def __init__(self, student: Denoiser, teacher: Denoiser, steps: int, ema_decay: float) -> None:
        super().__init__(student, ema_decay)
        self.teacher, self.steps = frozen(teacher), steps

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x, y = batch["x"], batch["y"]
        process = self.model.process
        n = self.steps
        t = draws.randint(1, n + 1, len(x), x.device).float() / n
        s = t - 1.0 / n
        x_t = process.noise(x, draws.randn_like(x), t)
        with torch.no_grad():
            target = two_step_target(self.teacher, x_t, t, s, y)
        x0 = self.model.split(x_t, t, y)[0]
        alpha, sigma, _, _ = process.coefficients(t)
        weight = (alpha**2 / sigma**2).clamp(min=1.0)
        return {"loss": (weight * flat_mean((x0 - target) ** 2)).mean()}


@STEP_METHODS.register("progressive")
class Progressive(StepMethod):
    """Progressive distillation (Salimans & Ho, ICLR 2022): halve the step count each round,
    the last round's student becoming the next round's teacher, down to ``final_steps``
    (both powers of two, since every round halves). Each round's EMA is both its student and the
    next round's teacher and starting point, as in the reference implementation."""

    def __init__(self, start_steps: int | None = None, final_steps: int = 1, ema_decay: float = 0.999) -> None:
        if not _power_of_two(final_steps):
            raise ConfigError(f"progressive: final_steps must be a power of two (1, 2, 4, ...), got {final_steps}: "
                              "each round halves the step count.")
        if start_steps is not None and not _power_of_two(start_steps):
            raise ConfigError(f"progressive: start_steps must be a power of two, got {start_steps}.")
        self.start_steps, self.final_steps = start_steps, final_steps
        self.ema_decay = check_ema_decay("progressive", ema_decay)

    def train(self, context: StepsContext) -> dict[int, Denoiser]:
        steps = self.start_steps or context.teacher_steps
        if not _power_of_two(steps) or self.final_steps > steps // 2:
            raise ConfigError(f"progressive: start_steps ({steps}, default teacher.steps) must be a power of two "
                              f"at least twice final_steps ({self.final_steps}).")
        teacher, students = context.teacher, {}
        student = context.student()
        while steps > self.final_steps:
            steps //= 2
            objective = ProgressiveObjective(student, teacher, steps, self.ema_decay)
            context.stage(objective, context.splits.train, f"progressive_{steps}")
            teacher = students[steps] = context.for_sampling(copy.deepcopy(objective.ema))
            student = copy.deepcopy(objective.ema).requires_grad_(True).train()
        return students

    def generator(self, denoiser: Denoiser) -> OdeGenerator:
        return OdeGenerator(denoiser, "ddim")


def _power_of_two(n: object) -> bool:
    return isinstance(n, int) and n >= 1 and not n & (n - 1)
