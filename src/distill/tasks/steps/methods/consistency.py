"""Consistency distillation: map any point of a teacher ODE trajectory straight to its end."""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from distill.diffusion.denoiser import Denoiser
from distill.diffusion.process import broadcast
from distill.diffusion.sampling import SOLVERS, RenoisingGenerator, ode_step
from distill.engine import draws
from distill.errors import ConfigError
from distill.models.base import frozen
from distill.tasks.steps.methods.base import STEP_METHODS, StepMethod, StepsContext
from distill.tasks.steps.objectives import StudentObjective, check_ema_decay

SIGMA_DATA = 0.5


def boundary_coefficients(t: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """(c_skip, c_out) with c_skip(0) = 1 and c_out(0) = 0, so f(x, 0) = x exactly
    (Song et al., ICML 2023, eq. 5). Time is scaled as in LCM (Luo et al., 2023): 1,000
    discrete steps × ``timestep_scaling`` 10 = ``scale`` 10,000 for t ∈ [0, 1], so away
    from t ≈ 0 the function is the network's x0 prediction."""
    scaled = (scale * t) ** 2
    return SIGMA_DATA**2 / (scaled + SIGMA_DATA**2), (scale * t) / torch.sqrt(scaled + SIGMA_DATA**2)


def consistency_function(model: Denoiser, x: Tensor, t: Tensor, y: Tensor | None, scale: float) -> Tensor:
    """``f(x, t) = c_skip(t)·x + c_out(t)·x̂0(x, t)``."""
    skip, out = (broadcast(c, x) for c in boundary_coefficients(t, scale))
    # c_out(0) = 0: f(x, 0) = x even where x̂0 is undefined (x0 prediction at the flow path's t = 0).
    return skip * x + torch.where(out == 0, 0.0, out * model.split(x, t, y)[0])


def consistency_distance(a: Tensor, b: Tensor, kind: str) -> Tensor:
    """Per-sample L2² or pseudo-Huber ``sqrt(‖a − b‖² + c²) − c`` with c = 0.00054·√dim
    (Song & Dhariwal, ICLR 2024)."""
    squared = (a - b).flatten(1).pow(2).sum(dim=1)
    if kind == "l2":
        return squared / a[0].numel()
    c = 0.00054 * math.sqrt(a[0].numel())
    return torch.sqrt(squared + c * c) - c


class ConsistencyObjective(StudentObjective):
    """``d(f_θ(x_{t_{n+k}}, t_{n+k}), f_θ⁻(x̂_{t_n}, t_n))`` where x̂_{t_n} is one teacher ODE step
    (skipping k grid intervals, as LCM) and θ⁻ the target network, an EMA of θ of decay
    ``target_decay``; samples come from a second, slower EMA (``ema_decay``), as in Song et al.
    (μ = 0.95 for θ⁻, 0.9999 for sampling). Both are updated once per optimizer step."""

    def __init__(self, student: Denoiser, teacher: Denoiser, intervals: int, skip: int, solver: str,
                 distance: str, target_decay: float, scale: float, ema_decay: float) -> None:
        super().__init__(student, ema_decay)
        self.teacher = frozen(teacher)
        self.target = frozen(copy.deepcopy(student))
        self.intervals, self.skip, self.solver = intervals, skip, solver
        self.distance, self.target_decay, self.scale = distance, target_decay, scale

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        """θ⁻ ← μ·θ⁻ + (1 − μ)·θ (no warm-up: the target's lag is part of the method), then the sampling EMA."""
        for target, online in zip(self.target.parameters(), self.model.parameters()):
            target.lerp_(online, 1.0 - self.target_decay)
        super().after_optimizer_step(step)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x, y = batch["x"], batch["y"]
        n = draws.randint(self.skip, self.intervals + 1, len(x), x.device)
        t, s = n.float() / self.intervals, (n - self.skip).float() / self.intervals
        x_t = self.model.process.noise(x, draws.randn_like(x), t)
        with torch.no_grad():
            x_s = ode_step(self.teacher, x_t, t, s, y, self.solver)
            target = consistency_function(self.target, x_s, s, y, self.scale)
        pred = consistency_function(self.model, x_t, t, y, self.scale)
        return {"loss": consistency_distance(pred, target, self.distance).mean()}


@STEP_METHODS.register("consistency")
class Consistency(StepMethod):
    """Consistency distillation (Song et al., ICML 2023; latent consistency models, Luo et al., 2023):
    the student, initialised from the teacher, is sampled in 1–4 steps with re-noising."""

    def __init__(self, intervals: int = 32, skip: int = 1, distance: str = "huber", target_decay: float = 0.95,
                 time_scale: float = 10_000.0, solver: str | None = None, ema_decay: float = 0.999) -> None:
        if distance not in ("huber", "l2"):
            raise ConfigError(f"consistency: distance must be 'huber' or 'l2', got {distance!r}.")
        if not 1 <= skip <= intervals:
            raise ConfigError(f"consistency: need 1 <= skip ({skip}) <= intervals ({intervals}).")
        if not 0.0 <= target_decay < 1.0:
            raise ConfigError(f"consistency: target_decay (the EMA of the target network θ⁻) must lie in [0, 1), "
                              f"got {target_decay}.")
        if solver is not None and solver not in SOLVERS:
            raise ConfigError(f"consistency: unknown solver {solver!r}; choose one of {list(SOLVERS)} or leave it unset.")
        self.intervals, self.skip, self.distance = intervals, skip, distance
        self.target_decay, self.scale, self.solver = target_decay, time_scale, solver
        self.ema_decay = check_ema_decay("consistency", ema_decay)

    def train(self, context: StepsContext) -> dict[int, Denoiser]:
        objective = ConsistencyObjective(context.student(), context.teacher, self.intervals, self.skip,
                                         self.solver or context.solver, self.distance, self.target_decay, self.scale,
                                         self.ema_decay)
        context.stage(objective, context.splits.train, "consistency")
        return dict.fromkeys((1, 2, 4), context.for_sampling(objective.ema))

    def generator(self, denoiser: Denoiser) -> RenoisingGenerator:
        scale = self.scale
        return RenoisingGenerator(lambda x, t, y: consistency_function(denoiser, x, t, y, scale), denoiser.process,
                                  module=denoiser)
