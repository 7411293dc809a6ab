"""Rectified flow: straighten the teacher's noise → sample coupling, then distil to k steps (with an MSE or,
for point sets, a Chamfer loss: PSF)."""

from __future__ import annotations

import copy

from torch import Tensor

from distill.diffusion.denoiser import Denoiser
from distill.diffusion.process import FlowProcess, broadcast
from distill.diffusion.sampling import OdeGenerator
from distill.engine import draws
from distill.errors import ConfigError
from distill.metrics.point_sets import chamfer
from distill.tasks.steps.methods.base import STEP_METHODS, StepMethod, StepsContext, check_flow_velocity
from distill.tasks.steps.objectives import StudentObjective, check_ema_decay, flat_mean

LOSSES = ("mse", "chamfer")


class ReflowObjective(StudentObjective):
    """Regression on fixed pairs (Liu et al., ICLR 2023): at ``x_t = α_t·x1 + σ_t·z`` the student
    predicts the pair itself — for a flow teacher ``x_t = (1 − t)·x1 + t·z`` and the velocity target
    ``z − x1``; for a diffusion teacher (e.g. a diffusers DDPM folder predicting ε) the target of its
    own parameterisation, ε = z, on the DDPM path, whose DDIM step is exact on a straight coupling
    (``x/α = x1 + (σ/α)·z`` is a line in σ/α, Song et al., ICLR 2021).

    Batches are teacher pairs ``{"sample", "noise", "y"}``. With ``steps`` set,
    t is drawn from that k-step grid only: the distillation stage that specialises the
    straightened flow to k Euler steps. ``loss`` ``chamfer`` (point sets ``(B, N, 3)``) scores the sample the
    step predicts, ``x_t − t·v``, by its Chamfer distance to the teacher's sample instead of the squared
    error of the velocity: PSF's distillation (Wu et al., CVPR 2023), which leaves the student free to place
    a point anywhere on the teacher's surface rather than at the one spot its noise point was paired with.
    """

    def __init__(self, student: Denoiser, ema_decay: float, steps: int | None = None, loss: str = "mse") -> None:
        super().__init__(student, ema_decay)
        if loss not in LOSSES:
            raise ConfigError(f"reflow: the loss must be one of {list(LOSSES)}, got {loss!r}.")
        self.steps, self.loss = steps, loss

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        sample, noise, y = batch["sample"], batch["noise"], batch["y"]
        n, device = len(sample), sample.device
        if self.steps is None:
            t = draws.rand(n, device)
        else:
            t = draws.randint(1, self.steps + 1, n, device).float() / self.steps
        process = self.model.process
        x_t = process.noise(sample, noise, t)
        pred = self.model(x_t, t, y)
        if self.loss == "chamfer":  # a flow velocity student (checked): the step's sample is x_t − t·v
            return {"loss": chamfer(x_t - broadcast(t, pred) * pred, sample).mean()}
        target = process.target(self.model.prediction, sample, noise, t)
        return {"loss": flat_mean((pred - target) ** 2).mean()}


@STEP_METHODS.register("reflow")
class Reflow(StepMethod):
    """Rectified flow (Liu, Gong & Liu, ICLR 2023): generate teacher pairs, reflow once on them
    (student initialised from the teacher), then fine-tune a copy of its EMA on the ``distill_steps``
    grid with ``distill_loss`` (``mse``, or ``chamfer`` for point sets: PSF, Wu et al., CVPR 2023); each stage
    samples from its EMA. Students of a flow teacher sample with Euler, those of a diffusion teacher with
    DDIM (the step that is exact on the straightened coupling)."""

    def __init__(self, pairs: int = 0, distill_steps: int | None = 1, distill_fraction: float = 0.5,
                 ema_decay: float = 0.999, distill_loss: str = "mse") -> None:
        if distill_steps is not None and distill_steps < 1:
            raise ConfigError(f"reflow: distill_steps must be >= 1 or null, got {distill_steps}.")
        if not 0.0 < distill_fraction < 1.0:
            raise ConfigError(f"reflow: distill_fraction must lie in (0, 1), got {distill_fraction}.")
        if distill_loss not in LOSSES:
            raise ConfigError(f"reflow: distill_loss must be one of {list(LOSSES)}, got {distill_loss!r}.")
        if distill_loss != "mse" and distill_steps is None:
            raise ConfigError(f"reflow: distill_loss {distill_loss!r} is the loss of the distillation stage; set "
                              "distill_steps (e.g. 1) or leave distill_loss at mse.")
        self.pairs, self.distill_steps, self.fraction = pairs, distill_steps, distill_fraction
        self.ema_decay = check_ema_decay("reflow", ema_decay)
        self.distill_loss = distill_loss

    def check(self, teacher: Denoiser) -> None:
        if self.distill_loss == "chamfer":  # the Chamfer loss scores the sample of one Euler step of a velocity
            check_flow_velocity(teacher, "reflow with distill_loss chamfer")

    def check_data(self, input_shape: tuple[int, ...]) -> None:
        if self.distill_loss == "chamfer" and (len(input_shape) != 2 or input_shape[1] != 3):
            raise ConfigError(f"reflow: distill_loss chamfer compares point sets (N, 3); this data's samples are "
                              f"{tuple(input_shape)}. Use distill_loss mse, or point-set data (mesh_points, "
                              "point_sets).")

    def train(self, context: StepsContext) -> dict[int, Denoiser]:
        pairs = context.teacher_pairs(self.pairs or None)
        if self.distill_steps is None:
            return dict.fromkeys((1, 2, 4), context.for_sampling(self.reflow(context, pairs)))
        reflow_steps, distill_steps = self.budgets(context, pairs)
        reflowed = self.reflow(context, pairs, reflow_steps)
        students = dict.fromkeys((1, 2, 4), context.for_sampling(reflowed))
        students[self.distill_steps] = self.distil(context, pairs, reflowed, distill_steps)
        return students

    def budgets(self, context: StepsContext, pairs) -> tuple[int, int]:
        """Optimizer steps of the reflow and the distillation stage: ``distill_fraction`` of the budget to the latter."""
        total = context.train.total_steps(len(pairs) // context.train.batch_size)
        distill_budget = max(1, int(self.fraction * total))
        return total - distill_budget, distill_budget

    def reflow(self, context: StepsContext, pairs, steps: int | None = None) -> Denoiser:
        """The reflow stage on ``pairs`` (``steps`` optimizer steps, default the whole budget): its EMA."""
        objective = ReflowObjective(context.student(), self.ema_decay)
        context.stage(objective, pairs, "reflow", _steps(context, steps))
        return objective.ema

    def distil(self, context: StepsContext, pairs, reflowed: Denoiser, steps: int, loss: str | None = None,
               label: str | None = None) -> Denoiser:
        """A copy of ``reflowed`` fine-tuned on the ``distill_steps`` grid with ``loss`` (default
        ``distill_loss``) for ``steps`` optimizer steps, as stage ``label``: its EMA, ready to sample."""
        objective = ReflowObjective(copy.deepcopy(reflowed).requires_grad_(True).train(), self.ema_decay,
                                    self.distill_steps, loss or self.distill_loss)
        context.stage(objective, pairs, label or f"reflow_distill_{self.distill_steps}", _steps(context, steps))
        return context.for_sampling(objective.ema)

    def generator(self, denoiser: Denoiser) -> OdeGenerator:
        return OdeGenerator(denoiser, "euler" if isinstance(denoiser.process, FlowProcess) else "ddim")


def _steps(context: StepsContext, steps: int | None):
    """The context's training config for a stage of ``steps`` optimizer steps (None: as configured)."""
    return None if steps is None else context.train.model_copy(update={"steps": steps, "epochs": None})
