"""What the shared engine optimises for the dataset family outside its bilevel loops: a fresh network
trained on a (synthetic or real) set for the evaluation protocol, and an MTT expert recording its
trajectory. Both are ``forward(batch) -> {"loss", ...}`` objectives over ``{"x", "y"}`` batches
(``"target"`` too, with soft labels), handed to :func:`distill.engine.trainer.train` by :func:`fit`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector
from torch.utils.data import Dataset

from distill.engine.config import TrainConfig
from distill.engine.trainer import TrainResult, train
from distill.experiment.runner import Run
from distill.metrics.classification import batch_accuracy


def fit(objective: nn.Module, data: Dataset, config: TrainConfig, run: Run | None = None,
        label: str = "train") -> TrainResult:
    """Train ``objective`` through the engine: as stage ``label`` of ``run`` (checkpointed there and resumed
    under ``--resume``), or, without a run, in a temporary folder removed afterwards."""
    if run is not None:
        return run.train(objective, data, config, label)
    with tempfile.TemporaryDirectory(prefix="distill-dataset-") as folder:
        return train(objective, data, config, Path(folder), description=label)


class SetObjective(nn.Module):
    """A network trained on a set: cross-entropy on ``y``, or with soft labels (``"target"``, probabilities at
    ``temperature``) Hinton's ``T² · KL(target ‖ softmax(outputs / T))`` (batch mean; ``T²`` keeps the
    gradient scale of ``T = 1``). ``augment(images, generator)``, when given, draws afresh for every
    minibatch from ``generator``.

    ``on_epoch(epoch, lr, mean_loss)``, when given, is called after each epoch of ``steps_per_epoch``
    optimizer steps with the epoch's sample-weighted mean loss and ``lr(epoch)``; the loss is read back
    only then, so leaving it out keeps training free of host syncs.
    """

    def __init__(self, model: nn.Module, augment=None, generator: torch.Generator | None = None,
                 temperature: float = 1.0, on_epoch: Callable[[int, float, float], None] | None = None,
                 steps_per_epoch: int = 1, lr: Callable[[int], float] | None = None) -> None:
        super().__init__()
        self.model, self.augment, self.generator, self.temperature = model, augment, generator, temperature
        self.on_epoch, self.steps_per_epoch, self.lr = on_epoch, steps_per_epoch, lr
        self._loss_sum: Tensor | None = None
        self._seen = 0

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x, y = batch["x"], batch["y"]
        if self.augment is not None:
            x = self.augment(x, self.generator)
        output = self.model(x)
        if "target" in batch:
            log_probs = F.log_softmax(output / self.temperature, dim=1)
            loss = F.kl_div(log_probs, batch["target"], reduction="batchmean") * self.temperature ** 2
        else:
            loss = F.cross_entropy(output, y)
        if self.on_epoch is not None:
            weighted = loss.detach() * len(y)
            self._loss_sum = weighted if self._loss_sum is None else self._loss_sum + weighted
            self._seen += len(y)
        return {"loss": loss}

    def after_optimizer_step(self, step: int) -> None:
        if self.on_epoch is None or step % self.steps_per_epoch:
            return
        epoch = step // self.steps_per_epoch - 1
        self.on_epoch(epoch, self.lr(epoch) if self.lr is not None else float("nan"), float(self._loss_sum) / self._seen)
        self._loss_sum, self._seen = None, 0


def flat_parameters(model: nn.Module) -> Tensor:
    """``model``'s parameters as one float32 CPU vector (``parameters_to_vector`` order)."""
    return parameters_to_vector(model.parameters()).detach().to("cpu", torch.float32).clone()


class ExpertObjective(nn.Module):
    """An MTT expert (Cazenavette et al., CVPR 2022): cross-entropy on real batches, each with one fresh
    ``augment.draw`` when given, and the parameter vector recorded after every epoch.

    ``trajectory`` (``(epochs + 1, P)``, row 0 the start) and the augmentation generator's state
    (``augment_rng``) are buffers, so an engine checkpoint holds them and a resumed expert goes on
    exactly; the draws come from a generator seeded with ``seed``.
    """

    def __init__(self, model: nn.Module, epochs: int, steps_per_epoch: int, augment=None, seed: int = 0) -> None:
        super().__init__()
        self.model, self.augment, self.steps_per_epoch = model, augment, steps_per_epoch
        start = flat_parameters(model)
        self.register_buffer("trajectory", torch.zeros(epochs + 1, start.numel()))
        self.trajectory[0] = start
        self.register_buffer("augment_rng", torch.Generator().manual_seed(seed).get_state())
        self.generator = torch.Generator()

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x, y = batch["x"], batch["y"]
        if self.augment is not None:
            self.generator.set_state(self.augment_rng.cpu())
            x = self.augment.apply(x, self.augment.draw(self.generator))
            self.augment_rng.copy_(self.generator.get_state())
        logits = self.model(x)
        return {"loss": F.cross_entropy(logits, y), "acc": batch_accuracy(logits, y)}

    def after_optimizer_step(self, step: int) -> None:
        if step % self.steps_per_epoch == 0:
            self.trajectory[step // self.steps_per_epoch] = flat_parameters(self.model).to(self.trajectory.device)
