"""Improved consistency (iCT; Song & Dhariwal, "Improved Techniques for Training Consistency Models",
ICLR 2024): no EMA target network, Karras noise levels whose count doubles on a curriculum, a
lognormal pick of the interval, weights 1/Δσ and the pseudo-Huber distance."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from distill.diffusion.denoiser import Denoiser
from distill.diffusion.process import Process
from distill.diffusion.sampling import SOLVERS, ode_step
from distill.engine import draws
from distill.errors import ConfigError
from distill.models.base import frozen
from distill.tasks.steps.methods.base import STEP_METHODS, StepsContext
from distill.tasks.steps.methods.consistency import Consistency, consistency_distance, consistency_function
from distill.tasks.steps.objectives import StudentObjective, check_ema_decay


def times_of_ratios(process: Process, ratios: Tensor, iterations: int = 40) -> Tensor:
    """The times where the process's σ(t)/α(t) equals ``ratios`` (float64), by vectorised bisection
    on that increasing ratio; a ratio outside the process's range ends at t ≈ 0 or t ≈ 1."""
    ratios = torch.as_tensor(ratios, dtype=torch.float64)
    low, high = torch.zeros_like(ratios), torch.ones_like(ratios)
    for _ in range(iterations):
        mid = (low + high) / 2
        alpha, sigma, _, _ = process.coefficients(mid)
        below = sigma < ratios * alpha  # σ/α < ratio without dividing by α = 0 (flow at t = 1)
        low, high = torch.where(below, mid, low), torch.where(below, high, mid)
    return (low + high) / 2


@dataclass(frozen=True)
class Curriculum:
    """iCT's discretisation: N(k) Karras levels σ_i (σ_min, σ_max, ρ; Karras et al., NeurIPS 2022),
    N growing from s0 + 1 to s1 + 1 (iCT §3.4, eq. 5), and the lognormal P_mean, P_std pick (§3.5)."""

    s0: int
    s1: int
    p_mean: float
    p_std: float
    sigma_min: float
    sigma_max: float
    rho: float

    def levels(self, step: int, total: int) -> int:
        """N(k) = min(s0·2^⌊k/K'⌋, s1) + 1 with K' = ⌊K / (log2⌊s1/s0⌋ + 1)⌋, K = ``total`` steps."""
        period = max(1, math.floor(total / (math.log2(self.s1 // self.s0) + 1)))
        # past s1.bit_length() doublings s0·2^j ≥ s1 anyway: the cap keeps 2^j small on long runs
        return min(self.s0 << min(step // period, self.s1.bit_length()), self.s1) + 1

    def sigmas(self, levels: int) -> Tensor:
        """σ_i = (σ_min^{1/ρ} + i/(N−1)·(σ_max^{1/ρ} − σ_min^{1/ρ}))^ρ, i = 0..N−1 (float64)."""
        low, high = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return (low + torch.linspace(0, 1, levels, dtype=torch.float64) * (high - low)) ** self.rho

    def probabilities(self, sigmas: Tensor) -> Tensor:
        """p(i) ∝ erf((log σ_{i+1} − P_mean)/(√2 P_std)) − erf((log σ_i − P_mean)/(√2 P_std))."""
        cdf = torch.erf((sigmas.log() - self.p_mean) / (math.sqrt(2) * self.p_std))
        mass = cdf[1:] - cdf[:-1]
        return mass / mass.sum()

    def grid(self, process: Process, levels: int) -> tuple[Tensor, Tensor, Tensor]:
        """(times t_i of the levels, weights λ_i = 1/(σ_{i+1} − σ_i), interval probabilities p(i)),
        float64; the largest level is t = 1 exactly, the pure noise sampling starts from."""
        sigmas = self.sigmas(levels)
        times = times_of_ratios(process, sigmas)
        times[-1] = 1.0
        return times, 1 / sigmas.diff(), self.probabilities(sigmas)


class ImprovedConsistencyObjective(StudentObjective):
    """``λ_i·d(f_θ(x_{t_{i+1}}, t_{i+1}), sg f_θ(x̂_{t_i}, t_i))``: the target is the online network
    under stop-gradient (iCT drops the EMA θ⁻). x̂_{t_i} is one teacher ODE step from x_{t_{i+1}}
    (distillation; ``teacher``) or, with ``teacher`` None, the same x0 and ε noised to t_i (iCT's
    consistency training). The step count, saved with checkpoints, sets the curriculum's N."""

    def __init__(self, student: Denoiser, teacher: Denoiser | None, curriculum: Curriculum, total_steps: int,
                 solver: str, distance: str, scale: float, ema_decay: float) -> None:
        super().__init__(student, ema_decay)
        self.teacher = None if teacher is None else frozen(teacher)
        self.curriculum, self.total_steps = curriculum, total_steps
        self.solver, self.distance, self.scale = solver, distance, scale
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))  # saved with checkpoints
        self.cached: tuple[int, Tensor, Tensor, Tensor] | None = None

    def after_optimizer_step(self, step: int) -> None:
        self.steps_done.fill_(step)
        super().after_optimizer_step(step)

    def grid(self) -> tuple[int, Tensor, Tensor, Tensor]:
        """(N, times, λ, p) at the current step, float32 on the objective's device; rebuilt when N changes."""
        levels = self.curriculum.levels(int(self.steps_done), self.total_steps)
        if self.cached is None or self.cached[0] != levels:
            device = self.steps_done.device
            grid = self.curriculum.grid(self.model.process, levels)
            self.cached = (levels, *(v.to(device, torch.float32) for v in grid))
        return self.cached

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x, y = batch["x"], batch["y"]
        levels, times, weights, probabilities = self.grid()
        i = draws.per_sample(len(x), lambda m: torch.multinomial(probabilities, m, replacement=True))
        t, s = times[i + 1], times[i]
        eps = draws.randn_like(x)
        process = self.model.process
        x_t = process.noise(x, eps, t)
        with torch.no_grad():
            if self.teacher is None:
                x_s = process.noise(x, eps, s)
            else:
                x_s = ode_step(self.teacher, x_t, t, s, y, self.solver)
            target = consistency_function(self.model, x_s, s, y, self.scale)
        pred = consistency_function(self.model, x_t, t, y, self.scale)
        loss = weights[i] * consistency_distance(pred, target, self.distance)
        return {"loss": loss.mean(), "intervals": x.new_tensor(float(levels - 1))}


def _number(name: str, value, fix: str) -> float:
    """``value`` as a float, or a ConfigError naming option ``name`` and ``fix``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"ict: {name} must be a finite number ({fix}), got {value!r}.")
    return float(value)


@STEP_METHODS.register("ict")
class ImprovedConsistency(Consistency):
    """Improved consistency (iCT; Song & Dhariwal, ICLR 2024) as distillation (``target: teacher``,
    one teacher ODE step) or training (``target: data``): sampled in 1–4 steps with re-noising.

    Only the sampler (:meth:`Consistency.generator`, which reads ``self.scale``) is inherited; the
    options are iCT's own."""

    def __init__(self, s0: int = 10, s1: int = 1280, p_mean: float = -1.1, p_std: float = 2.0,
                 sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0, distance: str = "huber",
                 target: str = "teacher", solver: str | None = None, ema_decay: float = 0.999,
                 time_scale: float = 10_000.0) -> None:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (s0, s1)) or not 1 <= s0 <= s1:
            raise ConfigError(f"ict: s0 and s1 (the first and last interval counts of the curriculum) must be "
                              f"integers with 1 <= s0 <= s1 (the paper: 10 and 1280), got s0={s0!r}, s1={s1!r}.")
        sigma_min = _number("sigma_min", sigma_min, "the paper uses 0.002")
        sigma_max = _number("sigma_max", sigma_max, "the paper uses 80")
        if not 0 < sigma_min < sigma_max:
            raise ConfigError(f"ict: need 0 < sigma_min < sigma_max (the noise levels, as σ/α), got "
                              f"sigma_min={sigma_min}, sigma_max={sigma_max}; the paper uses 0.002 and 80.")
        rho, p_std = _number("rho", rho, "the paper uses 7"), _number("p_std", p_std, "the paper uses 2")
        if rho <= 0 or p_std <= 0:
            raise ConfigError(f"ict: rho and p_std must be positive (the paper: 7 and 2), got rho={rho}, "
                              f"p_std={p_std}.")
        p_mean = _number("p_mean", p_mean, "a log σ; the paper uses -1.1")
        if not math.log(sigma_min) <= p_mean <= math.log(sigma_max):
            raise ConfigError(f"ict: p_mean ({p_mean}) is a log σ and must lie in [log sigma_min, log sigma_max] = "
                              f"[{math.log(sigma_min):.3g}, {math.log(sigma_max):.3g}]; the paper uses -1.1.")
        if distance not in ("huber", "l2"):
            raise ConfigError(f"ict: distance must be 'huber' (pseudo-Huber, the paper's) or 'l2', got {distance!r}.")
        if target not in ("teacher", "data"):
            raise ConfigError(f"ict: target must be 'teacher' (consistency distillation, one teacher ODE step) or "
                              f"'data' (consistency training, no teacher), got {target!r}.")
        if solver is not None and solver not in SOLVERS:
            raise ConfigError(f"ict: unknown solver {solver!r}; choose one of {list(SOLVERS)} or leave it unset "
                              "(the teacher's).")
        if _number("time_scale", time_scale, "LCM's 10000") <= 0:
            raise ConfigError(f"ict: time_scale must be positive (LCM's 10000), got {time_scale}.")
        self.curriculum = Curriculum(s0, s1, p_mean, p_std, sigma_min, sigma_max, rho)
        self.distance, self.target, self.solver, self.scale = distance, target, solver, float(time_scale)
        self.ema_decay = check_ema_decay("ict", ema_decay)

    def train(self, context: StepsContext) -> dict[int, Denoiser]:
        data = context.splits.train
        total = context.train.total_steps(len(data) // context.train.batch_size)
        teacher = context.teacher if self.target == "teacher" else None
        objective = ImprovedConsistencyObjective(context.student(), teacher, self.curriculum, total,
                                                 self.solver or context.solver, self.distance, self.scale,
                                                 self.ema_decay)
        context.stage(objective, data, "ict")
        return dict.fromkeys((1, 2, 4), context.for_sampling(objective.ema))
