"""Expert training trajectories for trajectory matching (MTT, Cazenavette et al., CVPR 2022).

An expert is a fresh network trained on the real images with plain SGD; its trajectory is
its flattened parameter vector at the start and after every epoch, a ``(epochs + 1, P)``
tensor. The reference trains 100 experts for 50 epochs at lr 0.01, batch 256, no momentum,
no weight decay, with differentiable augmentation on every real batch; here the expert count
and epoch count are arguments so a CPU run can train a handful of short experts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from distill.data import TensorDictDataset
from distill.engine.config import TrainConfig
from distill.errors import ConfigError, check_count, check_positive
from distill.experiment.runner import Run
from distill.tasks.dataset.objectives import ExpertObjective, fit
from distill.tasks.dataset.synthetic import ClassBank

_KEY = "expert_{:05d}"
_FORMAT = "distill.expert_trajectories"


def train_expert_trajectories(bank: ClassBank, network: Callable[[], nn.Module], *, experts: int, epochs: int,
                              lr: float = 0.01, batch_size: int = 256, generator: torch.Generator,
                              augment=None, progress: bool = False, run: Run | None = None,
                              label: str = "experts") -> list[Tensor]:
    """Train ``experts`` fresh networks on ``bank`` through the shared engine and record where their parameters go.

    Each network comes from ``network()`` (under a seed drawn from ``generator``, which also seeds the
    shuffling and the augmentation draws), is trained in train mode for ``epochs`` epochs of shuffled
    minibatches (``batch_size``, the last one possibly smaller) with cross-entropy and SGD at ``lr`` (no
    momentum, no weight decay). When ``augment`` is given (an object with ``draw(generator)`` and
    ``apply(images, draw)``, e.g. DSA) every batch gets one fresh draw. With a ``run``, expert ``i`` is
    its stage ``label/expert_0000i`` (checkpointed each epoch, resumed under ``--resume``).
    Returns one float32 CPU tensor ``(epochs + 1, P)`` per expert: row 0 is the initial
    parameter vector (``parameters_to_vector`` order), row ``e`` the vector after epoch ``e``.
    """
    for name, value in (("experts", experts), ("epochs", epochs), ("batch_size", batch_size)):
        check_count(f"expert training: {name}", value)
    check_positive("expert training: lr (the reference uses 0.01)", lr)
    data = TensorDictDataset(x=bank.images, y=bank.labels)
    steps_per_epoch = math.ceil(len(data) / batch_size)
    trajectories: list[Tensor] = []
    for expert in range(experts):
        seed = int(torch.randint(2**31, (1,), generator=generator))
        config = TrainConfig(epochs=epochs, batch_size=batch_size, drop_last=False, optimizer="sgd", lr=lr,
                             momentum=0.0, seed=seed, log_every=steps_per_epoch,
                             checkpoint_every=steps_per_epoch if run is not None else 0,
                             progress=progress)
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
            torch.manual_seed(seed)
            objective = ExpertObjective(network(), epochs, steps_per_epoch, augment, seed)
            fit(objective, data, config, run, f"{label}/{_KEY.format(expert)}")
        trajectories.append(objective.trajectory.detach().to("cpu", torch.float32).clone())
    return trajectories


def save_trajectories(trajectories: Sequence[Tensor], path: Path | str) -> Path:
    """Write expert trajectories (each ``(E + 1, P)``) to one ``.safetensors`` file."""
    if not trajectories:
        raise ConfigError("there are no expert trajectories to save; train some with train_expert_trajectories.")
    tensors = {}
    for i, trajectory in enumerate(trajectories):
        if trajectory.dim() != 2:
            raise ConfigError(f"expert trajectory {i} must be (epochs + 1, P); got {tuple(trajectory.shape)}.")
        tensors[_KEY.format(i)] = trajectory.detach().to("cpu", torch.float32).contiguous()
    save_file(tensors, str(path), metadata={"format": _FORMAT, "experts": str(len(trajectories))})
    return Path(path)


def load_trajectories(path: Path | str) -> list[Tensor]:
    """The trajectories written by ``save_trajectories``, in their original order.

    A missing file, a file that is not safetensors, or a safetensors file holding no expert
    trajectories is refused with a ConfigError.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no expert trajectories at {path}; train them with train_expert_trajectories and "
                          "save_trajectories, or fix the path.")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ConfigError(f"{path} is not a safetensors file of expert trajectories ({err}); write one with "
                          "save_trajectories.") from None
    keys = sorted(k for k in tensors if k.startswith("expert_"))
    if not keys or any(tensors[k].dim() != 2 for k in keys):
        raise ConfigError(f"{path} holds no expert trajectories (expected 2-d 'expert_NNNNN' tensors); write one "
                          "with save_trajectories.")
    return [tensors[k] for k in keys]
