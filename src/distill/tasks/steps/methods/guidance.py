"""Guidance distillation: one network evaluation reproduces the teacher's two-evaluation CFG output."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distill.diffusion.cfg import conditional_and_null, guided
from distill.diffusion.denoiser import Denoiser
from distill.diffusion.objective import check_labels
from distill.diffusion.sampling import SOLVERS, OdeGenerator
from distill.engine import draws
from distill.errors import ConfigError
from distill.models.base import frozen
from distill.tasks.steps.methods.base import STEP_METHODS, StepMethod, StepsContext
from distill.tasks.steps.objectives import StudentObjective, check_ema_decay, flat_mean


def scale_input(w: Tensor | float, w_range: tuple[float, float]) -> Tensor | float:
    """The net's extra input ``d`` ∈ [0, 1] for guidance scale ``w`` ∈ [w_min, w_max] (affine)."""
    w_min, w_max = w_range
    return (w - w_min) / (w_max - w_min)


def guided_target(net: nn.Module, x_t: Tensor, t: Tensor, y: Tensor, w: Tensor, num_classes: int) -> Tensor:
    """The raw net output under classifier-free guidance at a per-row scale ``w``:
    ``uncond + w·(cond − uncond)`` (Ho & Salimans, 2022); labels outside the net's ``num_classes`` are refused."""
    check_labels(y, num_classes)
    return guided(*conditional_and_null(net, x_t, t, y), w)


class GuidanceObjective(StudentObjective):
    """Meng et al. (CVPR 2023), stage one: at ``x_t`` of real data, ``w ~ U(w_min, w_max)`` per row,
    the student told ``w`` regresses the teacher's guided prediction (in the teacher's own
    parameterisation) with the mean squared error."""

    def __init__(self, student: Denoiser, teacher: Denoiser, w_range: tuple[float, float],
                 ema_decay: float) -> None:
        super().__init__(student, ema_decay)
        self.teacher, self.w_range = frozen(teacher), w_range

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x, y = batch["x"], batch["y"]
        t = draws.rand(len(x), x.device)
        x_t = self.model.process.noise(x, draws.randn_like(x), t)
        w_min, w_max = self.w_range
        w = w_min + (w_max - w_min) * draws.rand(len(x), x.device)
        with torch.no_grad():
            target = guided_target(self.teacher.net, x_t, t, y, w, self.teacher.num_classes)
        pred = self.model.net(x_t, t, y, scale_input(w, self.w_range))
        return {"loss": flat_mean((pred - target) ** 2).mean()}


class AtScale(Denoiser):
    """A guidance-distilled student read at one scale: every call passes the fixed input ``d``
    (one network evaluation per call; its guidance attribute stays 1)."""

    def __init__(self, student: Denoiser, d: float) -> None:
        super().__init__(student.net, student.process, student.prediction, student.num_classes, 1.0, student.clip)
        self.d = float(d)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None, d: Tensor | None = None) -> Tensor:
        return super().forward(x, t, y, self.d)


@STEP_METHODS.register("guidance")
class GuidanceDistillation(StepMethod):
    """Guidance distillation (Meng et al., "On Distillation of Guided Diffusion Models", CVPR 2023,
    stage one): one student, told the guidance scale w through the step-size input (as LCM's
    guidance embedding, Luo et al., 2023), matches the teacher's classifier-free-guided output for
    every w in ``w_range`` in one evaluation instead of two. Students are sampled at ``scale`` with
    ``solver`` (the recipes set it to teacher.solver) at ``steps`` (default: teacher.steps)."""

    step_conditioned = True

    def __init__(self, w_range: tuple[float, float] = (1.0, 4.0), scale: float = 2.0, ema_decay: float = 0.999,
                 steps: list[int] | None = None, solver: str = "heun") -> None:
        if (not isinstance(w_range, (list, tuple)) or len(w_range) != 2 or not all(map(_is_number, w_range))
                or not 0.0 <= w_range[0] < w_range[1]):
            raise ConfigError(f"guidance: w_range must be two numbers [w_min, w_max] with 0 <= w_min < w_max "
                              f"(e.g. [1, 4]), got {w_range!r}.")
        self.w_range = (float(w_range[0]), float(w_range[1]))
        if not _is_number(scale) or not self.w_range[0] <= scale <= self.w_range[1]:
            raise ConfigError(f"guidance: scale (the w students are sampled at) must lie inside w_range "
                              f"{list(self.w_range)}, got {scale!r}; widen w_range or pick a scale inside it.")
        self.scale = float(scale)
        self.ema_decay = check_ema_decay("guidance", ema_decay)
        if steps is not None and (not isinstance(steps, (list, tuple)) or not steps
                                  or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                                             for s in steps)):
            raise ConfigError(f"guidance: steps must be a non-empty list of positive step counts (e.g. [4, 16]) "
                              f"or null for teacher.steps, got {steps!r}.")
        self.steps = sorted(set(steps)) if steps is not None else None
        if solver not in SOLVERS:
            raise ConfigError(f"guidance: solver must be one of {list(SOLVERS)} (set it to teacher.solver), "
                              f"got {solver!r}.")
        self.solver = solver

    def check(self, teacher: Denoiser) -> None:
        if not teacher.num_classes:
            raise ConfigError("guidance distillation needs a class-conditional teacher trained with label dropout "
                              "(teacher.conditional: true, teacher.cond_drop > 0); this teacher is unconditional.")

    def train(self, context: StepsContext) -> dict[int, Denoiser]:
        self.check(context.teacher)
        objective = GuidanceObjective(context.student(step_conditioned=True), context.teacher, self.w_range,
                                      self.ema_decay)
        context.stage(objective, context.splits.train, "guidance")
        student = context.for_sampling(objective.ema)
        return dict.fromkeys(self.steps or [context.teacher_steps], student)

    def generator(self, denoiser: Denoiser) -> OdeGenerator:
        return OdeGenerator(AtScale(denoiser, scale_input(self.scale, self.w_range)), self.solver)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
