"""What every step-distillation method shares: its context, training stages and teacher pairs."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from distill.data.base import DataSplits
from distill.data.tensors import InMemoryDataset
from distill.engine.checkpoint import latest_checkpoint
from distill.engine.config import TrainConfig
from distill.engine.trainer import TrainResult, train
from distill.errors import ConfigError
from distill.registry import Registry
from distill.steps.denoiser import Denoiser
from distill.steps.process import FlowProcess
from distill.steps.sampling import OdeGenerator

#: name → method class; ``Method(**options).run(context)`` returns {steps: generator}.
STEP_METHODS = Registry("step-distillation method")


@dataclass
class StepsContext:
    """The frozen teacher and everything a method needs to train students from it."""

    teacher: Denoiser
    splits: DataSplits
    train: TrainConfig
    run_dir: Path
    solver: str
    teacher_steps: int
    build_net: Callable[[bool], nn.Module]  # step_conditioned → a fresh net of the teacher's architecture
    resume: bool = False
    pair_count: int = 0

    def student(self, step_conditioned: bool = False) -> Denoiser:
        """A trainable copy of the teacher without guidance (students absorb it, Meng et al., CVPR 2023)."""
        if step_conditioned:
            net = self.build_net(True)
            net.load_state_dict(self.teacher.net.state_dict(), strict=False)
        else:
            net = copy.deepcopy(self.teacher.net)
        net.requires_grad_(True).train()
        teacher = self.teacher
        return Denoiser(net, teacher.process, teacher.prediction, teacher.num_classes, 1.0, teacher.clip)

    def stage(self, objective: nn.Module, data, label: str, config: TrainConfig | None = None) -> TrainResult:
        """Train ``objective`` on ``data`` in ``run_dir/label`` (resuming there when asked)."""
        folder = self.run_dir / label
        resume = self.resume and latest_checkpoint(folder / "checkpoints") is not None
        return train(objective, data, config or self.train, folder, resume=resume, description=label)

    def teacher_pairs(self, count: int | None = None, seed: int = 0) -> InMemoryDataset:
        """Noise → teacher-sample pairs at the teacher's full step count, stacked as x[:, 0] = sample,
        x[:, 1] = noise (the coupling rectified flow reflows and DMD regresses on)."""
        count = count or self.pair_count or len(self.splits.train)
        x, y = self.splits.train.x, self.splits.train.y
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn((count, *x.shape[1:]), generator=generator)
        labels = y[torch.randint(len(y), (count,), generator=generator)]
        sampler = OdeGenerator(self.teacher, self.solver)
        device = sampler.device
        samples = torch.cat([sampler.sample(n.to(device), lab.to(device), self.teacher_steps).cpu()
                             for n, lab in zip(noise.split(1000), labels.split(1000))])
        return InMemoryDataset(torch.stack([samples, noise], dim=1), labels)


def frozen(module: nn.Module) -> nn.Module:
    """``module`` in eval mode with gradients off."""
    return module.eval().requires_grad_(False)


def check_flow_velocity(teacher: Denoiser, method: str) -> None:
    """Methods defined on velocities need a flow-matching teacher whose net outputs the velocity
    (they train and sample the raw net output as dx/dt)."""
    if not isinstance(teacher.process, FlowProcess) or teacher.prediction != "velocity":
        raise ConfigError(f"{method} needs a flow-matching teacher (teacher.process: flow, "
                          f"teacher.prediction: velocity), got process {type(teacher.process).__name__} "
                          f"predicting {teacher.prediction!r}; train one or pick progressive / consistency / "
                          "dmd, which take any process and prediction.")


def flat_mean(values: Tensor) -> Tensor:
    """Per-sample mean over all but the batch dimension."""
    return values.flatten(1).mean(dim=1)
