"""Expert training trajectories for trajectory matching (MTT, Cazenavette et al., CVPR 2022).

An expert is a fresh network trained on the real images with plain SGD; its trajectory is
its flattened parameter vector at the start and after every epoch, a ``(epochs + 1, P)``
tensor. The reference trains 100 experts for 50 epochs at lr 0.01, batch 256, no momentum,
no weight decay, with differentiable augmentation on every real batch; here the expert count
and epoch count are arguments so a CPU run can train a handful of short experts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector

from distill.engine.progress import progress_bar
from distill.errors import ConfigError
from distill.metrics.classification import hits
from distill.tasks.dataset.synthetic import ClassBank

_KEY = "expert_{:05d}"
_FORMAT = "distill.expert_trajectories"


def train_expert_trajectories(bank: ClassBank, network: Callable[[], nn.Module], *, experts: int, epochs: int,
                              lr: float = 0.01, batch_size: int = 256, generator: torch.Generator,
                              augment=None, progress: bool = False) -> list[Tensor]:
    """Train ``experts`` fresh networks on ``bank`` and record where their parameters go.

    Each network comes from ``network()``, is trained in train mode for ``epochs`` epochs of
    shuffled minibatches (``batch_size``, order drawn from ``generator``) with cross-entropy and
    SGD at ``lr`` (no momentum, no weight decay). When ``augment`` is given (an object with
    ``draw(generator)`` and ``apply(images, draw)``, e.g. DSA) every batch gets one fresh draw.
    Returns one float32 CPU tensor ``(epochs + 1, P)`` per expert: row 0 is the initial
    parameter vector (``parameters_to_vector`` order), row ``e`` the vector after epoch ``e``.
    """
    for name, value in (("experts", experts), ("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"expert training needs a positive integer {name}; got {value!r}.")
    if not lr > 0:
        raise ConfigError(f"expert training needs a positive lr; got {lr!r} (the reference uses 0.01).")
    images, labels = bank.images, bank.labels
    count = images.shape[0]
    trajectories: list[Tensor] = []
    with progress_bar("experts", total=experts * epochs, enabled=progress) as bar:
        for expert in range(experts):
            net = network().to(images.device)
            net.train()
            optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.0, weight_decay=0.0)
            rows = [_flat(net)]
            for epoch in range(epochs):
                order = torch.randperm(count, generator=generator).to(images.device)
                total_loss, correct = 0.0, 0
                for batch in order.split(batch_size):
                    x, y = images[batch], labels[batch]
                    if augment is not None:
                        x = augment.apply(x, augment.draw(generator))
                    logits = net(x)
                    loss = F.cross_entropy(logits, y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total_loss += loss.item() * len(batch)
                    correct += int(hits(logits, y)[0])
                rows.append(_flat(net))
                bar.update(expert * epochs + epoch + 1,
                           {"train_loss": total_loss / count, "train_acc": correct / count})
            trajectories.append(torch.stack(rows))
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


def _flat(net: nn.Module) -> Tensor:
    return parameters_to_vector(net.parameters()).detach().to("cpu", torch.float32).clone()
