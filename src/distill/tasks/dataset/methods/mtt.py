"""Trajectory matching (MTT): Cazenavette et al., "Dataset Distillation by Matching Training
Trajectories", CVPR 2022.

Experts trained on the real data (``distill.tasks.dataset.experts``) leave parameter
trajectories. Each outer iteration starts a student at an expert's parameters after epoch
``t``, trains it for ``syn_steps`` SGD steps on the synthetic images with a learnable step
size, and penalises how far it lands from where the expert was ``expert_epochs`` epochs
later, normalised by how far the expert itself travelled. The whole unroll stays in the
autograd graph, so the loss is differentiated through every student step into the pixels
and the step size.

Defaults are the reference's own (``distill.py`` argument defaults, which are also its
CIFAR-100 1-image-per-class command): 20 student steps, 3 expert epochs, start epochs below
25, pixel lr 1000, step-size lr 1e-5, initial step size 0.01. The reference publishes no
MNIST setting. Cost grows with ``syn_steps`` (memory and time: the graph holds every student
step) and ``batch_syn``; on a CPU, pick a few short experts (e.g. 3 experts of 10 epochs),
``syn_steps`` around 5-10, ``expert_epochs`` 1-2 and ``max_start_epoch`` a few epochs, and
keep ``max_start_epoch + expert_epochs <= expert epochs + 1``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from distill.errors import ConfigError, NonFiniteLossError, check_int, check_positive
from distill.metrics.cost import parameter_count
from distill.tasks.dataset.experts import load_trajectories
from distill.tasks.dataset.methods.base import CONDENSERS, Condenser
from distill.tasks.dataset.synthetic import ClassBank, SyntheticSet

#: the learnable step size is clamped to at least this after every update (see TrajectoryMatching)
MIN_SYN_LR = 1e-6


def trajectory_matching_loss(student_end: Tensor, expert_start: Tensor, expert_target: Tensor) -> Tensor:
    """``||student_end - expert_target||² / ||expert_start - expert_target||²`` on flattened vectors.

    0 when the student lands on the expert's target, 1 when it never left the start, and
    unchanged when every vector is scaled by the same factor (the normalisation makes the
    loss comparable across layers of different scale and stages of training).
    """
    student_end, expert_start, expert_target = (v.reshape(-1) for v in (student_end, expert_start, expert_target))
    return (student_end - expert_target).pow(2).sum() / (expert_start - expert_target).pow(2).sum()


def unflatten_parameters(module: nn.Module, flat: Tensor) -> dict[str, Tensor]:
    """Split a flat vector (``parameters_to_vector`` order) into ``{name: tensor}`` of the module's shapes.

    The pieces are views of ``flat``, so gradients flow back into it.
    """
    named = list(module.named_parameters())
    pieces = flat.split([p.numel() for _, p in named])
    return {name: piece.view_as(p) for (name, p), piece in zip(named, pieces)}


def unroll_student(module: nn.Module, start: Tensor, images: Tensor, labels: Tensor, lr: Tensor | float,
                   steps: int, *, batch_size: int | None = None, generator: torch.Generator | None = None,
                   augment=None) -> Tensor:
    """Train ``module``'s architecture functionally from the flat parameters ``start``; the end vector.

    Each of ``steps`` steps takes ``θ ← θ - lr · ∇θ CE(f(x; θ), y)`` on a minibatch of
    ``batch_size`` images (``None``: all of them), drawn as consecutive chunks of a random
    permutation that is redrawn once used up; with ``augment`` each step's minibatch gets one
    fresh ``augment.draw(generator)``. The graph is kept (``create_graph``), so the result is
    differentiable with respect to ``images``, ``lr`` and ``start``.
    """
    count = images.shape[0]
    if batch_size is not None and batch_size < count and generator is None:
        raise ConfigError("minibatched student steps need a generator to draw the minibatches.")
    params = start.detach().clone().requires_grad_(True) if not start.requires_grad else start
    chunks: list[Tensor] = []
    for _ in range(steps):
        if batch_size is None or batch_size >= count:
            x, y = images, labels
        else:
            if not chunks:
                chunks = list(torch.randperm(count, generator=generator).split(batch_size))
            pick = chunks.pop(0).to(images.device)
            x, y = images[pick], labels[pick]
        if augment is not None:
            x = augment.apply(x, augment.draw(generator))
        logits = functional_call(module, unflatten_parameters(module, params), (x,))
        loss = F.cross_entropy(logits, y)
        grad, = torch.autograd.grad(loss, params, create_graph=True)
        params = params - lr * grad
    return params


@CONDENSERS.register("mtt")
class TrajectoryMatching(Condenser):
    """MTT (Cazenavette et al., CVPR 2022): match ``syn_steps`` student steps on the synthetic set to
    ``expert_epochs`` expert epochs.

    Options: ``trajectories`` (a list of ``(E + 1, P)`` tensors from
    ``train_expert_trajectories``, or the path of a file written by ``save_trajectories``;
    required), ``syn_steps`` (N), ``expert_epochs`` (M), ``max_start_epoch`` (start epochs
    are drawn from ``0..max_start_epoch-1``), ``lr`` and ``momentum`` (SGD of the pixels,
    1000 and 0.5), ``lr_lr`` (SGD lr of the step size, momentum 0.5), ``initial_syn_lr`` (the
    step size the student starts with, the experts' lr in the reference), ``batch_syn``
    (synthetic images per student step; ``None`` = all).

    The step size is a free scalar, as in the reference, which does nothing to keep it
    positive (it relies on the tiny ``lr_lr``); here it is clamped to at least
    ``MIN_SYN_LR`` after each update so the student never trains backwards.
    """

    defaults: ClassVar[dict[str, Any]] = {"lr": 1000.0, "momentum": 0.5, "syn_steps": 20, "expert_epochs": 3,
                                          "max_start_epoch": 25, "lr_lr": 1e-5, "initial_syn_lr": 0.01,
                                          "batch_syn": None, "trajectories": None}

    def __init__(self, synthetic: SyntheticSet, bank: ClassBank, network: Callable[[], nn.Module], augment=None,
                 tap: str = "features", **options: Any) -> None:
        super().__init__(synthetic, bank, network, augment, tap, **options)
        opts = self.options
        self.syn_steps, self.expert_epochs, self.max_start_epoch = (opts["syn_steps"], opts["expert_epochs"],
                                                                    opts["max_start_epoch"])
        self.batch_syn = opts["batch_syn"]
        device = synthetic.images.device
        self.student = network().to(device)
        self.student.train()
        self.student.requires_grad_(False)  # its parameters are replaced by the unrolled vector
        self.trajectories = self._checked(opts["trajectories"], parameter_count(self.student))
        self.syn_lr = torch.tensor(opts["initial_syn_lr"], device=device, requires_grad=True)
        self.lr_optimizer = torch.optim.SGD([self.syn_lr], lr=opts["lr_lr"], momentum=0.5)

    def learned(self) -> dict[str, Tensor]:
        return {**super().learned(), "syn_lr": self.syn_lr}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().optimizers(), "syn_lr": self.lr_optimizer}

    @classmethod
    def check_values(cls, options: dict[str, Any], ipc: int | None) -> None:
        super().check_values(options, ipc)
        for key in ("syn_steps", "expert_epochs", "max_start_epoch"):
            check_int(f"mtt option {key}", options[key])
        if options["batch_syn"] is not None:
            check_int("mtt option batch_syn", options["batch_syn"])
        for key in ("lr", "lr_lr", "initial_syn_lr"):
            check_positive(f"mtt option {key}", options[key])

    def _checked(self, trajectories, params: int) -> list[Tensor]:
        if isinstance(trajectories, (str, Path)):
            trajectories = load_trajectories(trajectories)
        if trajectories is None or len(trajectories) == 0:
            raise ConfigError("mtt needs expert trajectories (option trajectories): train them with "
                              "distill.tasks.dataset.experts.train_expert_trajectories and pass the list, or the "
                              "path of a file written by save_trajectories.")
        need = self.max_start_epoch + self.expert_epochs  # rows: start epochs < max_start_epoch, +M ahead
        checked = []
        for i, trajectory in enumerate(trajectories):
            if not isinstance(trajectory, Tensor) or trajectory.dim() != 2:
                raise ConfigError(f"expert trajectory {i} must be a (epochs + 1, P) tensor; got "
                                  f"{tuple(trajectory.shape) if isinstance(trajectory, Tensor) else type(trajectory)}.")
            if trajectory.shape[1] != params:
                raise ConfigError(f"expert trajectory {i} has {trajectory.shape[1]} parameters per row but the network "
                                  f"has {params}; train the experts with the same network as the distillation.")
            if trajectory.shape[0] < need:
                raise ConfigError(f"expert trajectory {i} covers {trajectory.shape[0] - 1} epochs, but max_start_epoch="
                                  f"{self.max_start_epoch} with expert_epochs={self.expert_epochs} needs {need - 1}; "
                                  "lower max_start_epoch or expert_epochs, or train the experts longer.")
            checked.append(trajectory.detach().float())
        return checked

    def iteration(self, generator: torch.Generator) -> dict[str, float]:
        """One outer step: a random expert and start epoch, the unroll, one update of pixels and step size."""
        pick = int(torch.randint(len(self.trajectories), (1,), generator=generator))
        start_epoch = int(torch.randint(self.max_start_epoch, (1,), generator=generator))
        trajectory = self.trajectories[pick]
        device = self.synthetic.images.device
        start = trajectory[start_epoch].to(device)
        target = trajectory[start_epoch + self.expert_epochs].to(device)
        end = unroll_student(self.student, start, self.synthetic.images, self.synthetic.labels, self.syn_lr,
                             self.syn_steps, batch_size=self.batch_syn, generator=generator, augment=self.augment)
        loss = trajectory_matching_loss(end, start, target)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"the trajectory-matching loss is {loss.item()} (expert {pick}, start epoch "
                                     f"{start_epoch}); lower lr_images, lr_lr or syn_steps, or check that the experts "
                                     "moved between epochs.")
        self.optimizer.zero_grad(set_to_none=True)
        self.lr_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.lr_optimizer.step()
        with torch.no_grad():
            self.syn_lr.clamp_(min=MIN_SYN_LR)
        return {"loss": loss.item(), "syn_lr": self.syn_lr.item()}
