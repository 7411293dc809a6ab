"""Rectified flow: straighten the teacher's noise → sample coupling, then distil to k steps."""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from distill.diffusion.denoiser import Denoiser
from distill.diffusion.process import FlowProcess
from distill.diffusion.sampling import OdeGenerator
from distill.errors import ConfigError
from distill.tasks.steps.methods.base import STEP_METHODS, StepMethod, StepsContext
from distill.tasks.steps.objectives import StudentObjective, check_ema_decay, flat_mean


class ReflowObjective(StudentObjective):
    """Regression on fixed pairs (Liu et al., ICLR 2023): at ``x_t = α_t·x1 + σ_t·z`` the student
    predicts the pair itself — for a flow teacher ``x_t = (1 − t)·x1 + t·z`` and the velocity target
    ``z − x1``; for a diffusion teacher (e.g. a diffusers DDPM folder predicting ε) the target of its
    own parameterisation, ε = z, on the DDPM path, whose DDIM step is exact on a straight coupling
    (``x/α = x1 + (σ/α)·z`` is a line in σ/α, Song et al., ICLR 2021).

    Batches are teacher pairs ``{"sample", "noise", "y"}``. With ``steps`` set,
    t is drawn from that k-step grid only: the distillation stage that specialises the
    straightened flow to k Euler steps.
    """

    def __init__(self, student: Denoiser, ema_decay: float, steps: int | None = None) -> None:
        super().__init__(student, ema_decay)
        self.steps = steps

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        sample, noise, y = batch["sample"], batch["noise"], batch["y"]
        n, device = len(sample), sample.device
        if self.steps is None:
            t = torch.rand(n, device=device)
        else:
            t = torch.randint(1, self.steps + 1, (n,), device=device).float() / self.steps
        process = self.model.process
        pred = self.model(process.noise(sample, noise, t), t, y)
        target = process.target(self.model.prediction, sample, noise, t)
        return {"loss": flat_mean((pred - target) ** 2).mean()}


@STEP_METHODS.register("reflow")
class Reflow(StepMethod):
    """Rectified flow (Liu, Gong & Liu, ICLR 2023): generate teacher pairs, reflow once on them
    (student initialised from the teacher), then fine-tune a copy of its EMA on the ``distill_steps``
    grid; each stage samples from its EMA. Students of a flow teacher sample with Euler, those of a
    diffusion teacher with DDIM (the step that is exact on the straightened coupling)."""

    def __init__(self, pairs: int = 0, distill_steps: int | None = 1, distill_fraction: float = 0.5,
                 ema_decay: float = 0.999) -> None:
        if distill_steps is not None and distill_steps < 1:
            raise ConfigError(f"reflow: distill_steps must be >= 1 or null, got {distill_steps}.")
        if not 0.0 < distill_fraction < 1.0:
            raise ConfigError(f"reflow: distill_fraction must lie in (0, 1), got {distill_fraction}.")
        self.pairs, self.distill_steps, self.fraction = pairs, distill_steps, distill_fraction
        self.ema_decay = check_ema_decay("reflow", ema_decay)

    def train(self, context: StepsContext) -> dict[int, Denoiser]:
        pairs = context.teacher_pairs(self.pairs or None)
        reflow = ReflowObjective(context.student(), self.ema_decay)
        if self.distill_steps is None:
            context.stage(reflow, pairs, "reflow")
            return dict.fromkeys((1, 2, 4), context.for_sampling(reflow.ema))
        total = context.train.total_steps(len(pairs) // context.train.batch_size)
        distill_budget = max(1, int(self.fraction * total))
        context.stage(reflow, pairs, "reflow",
                      context.train.model_copy(update={"steps": total - distill_budget, "epochs": None}))
        students = dict.fromkeys((1, 2, 4), context.for_sampling(reflow.ema))
        distilled = ReflowObjective(copy.deepcopy(reflow.ema).requires_grad_(True).train(), self.ema_decay,
                                    self.distill_steps)
        context.stage(distilled, pairs, f"reflow_distill_{self.distill_steps}",
                      context.train.model_copy(update={"steps": distill_budget, "epochs": None}))
        students[self.distill_steps] = context.for_sampling(distilled.ema)
        return students

    def generator(self, denoiser: Denoiser) -> OdeGenerator:
        return OdeGenerator(denoiser, "euler" if isinstance(denoiser.process, FlowProcess) else "ddim")
