"""What every step-distillation method shares: its registry, its context, training stages and teacher pairs.

A method is a registered class with ``train(context) -> {steps: trained student Denoiser}``
and ``generator(denoiser)``, the few-step sampler it uses (so a saved run is restored by
loading the student weights into fresh networks and wrapping them again); methods whose
student is told its step size set ``step_conditioned = True``.

Students train without x0 clipping (a clamp would zero the gradient of every pixel predicted
outside the range) and keep an exponential moving average of their weights
(:class:`~distill.tasks.steps.objectives.StudentObjective`); what a method returns, samples with
and saves is that EMA, wrapped by :meth:`StepsContext.for_sampling` with the teacher's clipping
back on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from distill.data.base import DataSplits
from distill.data.tensors import TensorDictDataset
from distill.diffusion.denoiser import Denoiser
from distill.diffusion.process import FlowProcess
from distill.diffusion.sampling import OdeGenerator
from distill.engine.config import TrainConfig
from distill.engine.trainer import TrainResult
from distill.errors import ConfigError
from distill.experiment.runner import Run
from distill.models.base import frozen
from distill.registry import Registry

#: name → method class; ``Method(**options).train(context)`` returns {steps: student}.
STEP_METHODS = Registry("step-distillation method")


class StepMethod:
    """Base of the registered methods: ``train`` the students, wrap one in its ``generator``;
    ``check`` refuses an unsuitable teacher before anything trains."""

    #: whether the student network is told its step size (shortcut models)
    step_conditioned = False

    def check(self, teacher: Denoiser) -> None:
        """Raise a ConfigError if this method cannot distil ``teacher`` (checked on the untrained teacher)."""

    def check_data(self, input_shape: tuple[int, ...]) -> None:
        """Raise a ConfigError if this method cannot take samples of ``input_shape`` (checked on loading)."""

    def train(self, context: StepsContext) -> dict[int, Denoiser]:
        """Train the students; ``{steps: student}`` (one network may serve several step counts)."""
        raise NotImplementedError

    def generator(self, denoiser: Denoiser):
        """The few-step sampler of a trained (or restored) student."""
        raise NotImplementedError


@dataclass
class StepsContext:
    """The frozen teacher and everything a method needs to train students from it."""

    teacher: Denoiser
    splits: DataSplits
    train: TrainConfig
    run: Run
    solver: str
    teacher_steps: int
    build_net: Callable[[bool], nn.Module]  # step_conditioned → a fresh net of the teacher's architecture
    pair_count: int = 0
    #: optimizer steps taken by every stage of the method (the budget column of the tables)
    train_steps: int = 0

    def student(self, step_conditioned: bool = False) -> Denoiser:
        """A trainable copy of the teacher without guidance (students absorb it, Meng et al., CVPR 2023)
        and without x0 clipping (the training path must keep every pixel's gradient).

        A step-conditioned student takes every teacher weight; only its (zero-initialised)
        step-size embedding is new, and any other mismatch is an error."""
        if step_conditioned:
            net = self.build_net(True)
            try:
                missing, unexpected = net.load_state_dict(self.teacher.net.state_dict(), strict=False)
            except RuntimeError as err:
                raise ConfigError(f"the step-conditioned student does not fit the teacher's weights: "
                                  f"{str(err).splitlines()[-1].strip()}") from None
            foreign = [k for k in missing if not k.startswith(STEP_EMBEDDING)] + list(unexpected)
            if foreign:
                raise ConfigError(f"the step-conditioned student does not fit the teacher's weights: {foreign[:4]}.")
        else:
            net = copy.deepcopy(self.teacher.net)
        net.requires_grad_(True).train()
        teacher = self.teacher
        return Denoiser(net, teacher.process, teacher.prediction, teacher.num_classes, 1.0, None)

    def for_sampling(self, student: Denoiser) -> Denoiser:
        """``student``'s network (shared, and frozen in place), with the teacher's x0 clipping: what a method
        returns and samples — pass it the EMA, or a copy of what still trains."""
        return frozen(Denoiser(student.net, student.process, student.prediction, student.num_classes, 1.0,
                               self.teacher.clip))

    def stage(self, objective: nn.Module, data, label: str, config: TrainConfig | None = None) -> TrainResult:
        """Train ``objective`` on ``data`` as stage ``label`` of the run (resuming where it has a checkpoint)."""
        result = self.run.train(objective, data, config or self.train, label)
        self.train_steps += result.steps
        return result

    def teacher_pairs(self, count: int | None = None) -> TensorDictDataset:
        """Noise → teacher-sample pairs at the teacher's full step count, as batches
        ``{"sample", "noise", "y", "x"}`` (the coupling rectified flow reflows and DMD regresses on;
        ``x`` is a real training point of label ``y``, what DMD2's GAN head sees as real);
        the noise is drawn from the run's seed, so seeds train on different pairs."""
        count = count or self.pair_count or len(self.splits.train)
        x, y = self.splits.train.x, self.splits.train.y
        generator = torch.Generator().manual_seed(self.train.seed)
        noise = torch.randn((count, *x.shape[1:]), generator=generator)
        rows = torch.randint(len(y), (count,), generator=generator)
        labels = y[rows]
        sampler = OdeGenerator(self.teacher, self.solver)
        device = sampler.device
        samples = torch.cat([sampler.sample(n.to(device), lab.to(device), self.teacher_steps).cpu()
                             for n, lab in zip(noise.split(1000), labels.split(1000))])
        return TensorDictDataset(sample=samples, noise=noise, y=labels, x=x[rows])


#: The name of the step-size embedding in step-conditioned networks (see ``distill.diffusion.nets``).
STEP_EMBEDDING = "embed.step."


def check_flow_velocity(teacher: Denoiser, method: str) -> None:
    """Methods defined on velocities need a flow-matching teacher whose net outputs the velocity
    (they train and sample the raw net output as dx/dt)."""
    if not isinstance(teacher.process, FlowProcess) or teacher.prediction != "velocity":
        raise ConfigError(f"{method} needs a flow-matching teacher (teacher.process: flow, "
                          f"teacher.prediction: velocity), got process {type(teacher.process).__name__} "
                          f"predicting {teacher.prediction!r}; train one or pick progressive / consistency / ict / "
                          "reflow / dmd, which take any process and prediction.")
