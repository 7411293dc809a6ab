"""``condense``: a real training set in, a synthetic set of ``ipc`` images per class out."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from distill.data.base import DATASETS, DataSplits
from distill.engine.progress import progress_bar
from distill.errors import ConfigError
from distill.tasks.dataset.augment import DSA
from distill.tasks.dataset.experts import train_expert_trajectories
from distill.tasks.dataset.methods import CONDENSERS
from distill.tasks.dataset.networks import build_network
from distill.tasks.dataset.synthetic import ClassBank, SyntheticSet


@dataclass
class Condensation:
    """What a condensation made: the set, the logged numbers of every iteration, and its speed."""

    synthetic: SyntheticSet
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def iterations_per_second(self) -> float:
        return len(self.history) / self.seconds if self.seconds else 0.0


def class_bank(dataset: DataSplits | ClassBank | tuple[Tensor, Tensor] | str) -> ClassBank:
    """The training images of ``dataset`` grouped by class: a registered name (``mnist``, ``digits``), a
    ``DataSplits``, an ``(images, labels)`` pair, or a ClassBank (returned as is)."""
    if isinstance(dataset, ClassBank):
        return dataset
    if isinstance(dataset, str):
        dataset = DATASETS.build(dataset)
    if isinstance(dataset, DataSplits):
        images, labels = dataset.train.x, dataset.train.y
        if images.dim() != 4:
            raise ConfigError(f"dataset distillation condenses images (N, C, H, W); {dataset.name} has inputs of shape "
                              f"{tuple(dataset.input_shape)}.")
        return ClassBank(images, labels, dataset.num_classes)
    if isinstance(dataset, tuple) and len(dataset) == 2:
        images, labels = (torch.as_tensor(t) for t in dataset)
        return ClassBank(images, labels, int(labels.max()) + 1)
    raise ConfigError(f"condense takes a dataset name, a DataSplits, an (images, labels) pair or a ClassBank; got "
                      f"{type(dataset).__name__}.")


def network_factory(name: str, bank: ClassBank, width: int = 32, depth: int = 3) -> Callable[[], nn.Module]:
    """A function returning a freshly initialised network ``name`` for the bank's images (checked once now)."""
    build_network(name, bank.image_shape, bank.num_classes, width, depth)

    def fresh() -> nn.Module:
        return build_network(name, bank.image_shape, bank.num_classes, width, depth)

    return fresh


def seeded_start(bank: ClassBank, ipc: int, init: str, seed: int) -> tuple[SyntheticSet, torch.Generator]:
    """The initial set (``ipc`` real images per class, or noise) and the generator the condensation then draws
    from, both from ``seed``; the global generator is seeded too (fresh networks draw their weights from it)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    return (SyntheticSet.from_real if init == "real" else SyntheticSet.from_noise)(bank, ipc, generator), generator


def run_condenser(condenser, iterations: int, generator: torch.Generator, progress: bool = False,
                  label: str = "condense") -> Condensation:
    """``iterations`` outer iterations of ``condenser``: its set, the logged numbers of each, the time taken."""
    history = []
    started = time.perf_counter()
    with progress_bar(label, iterations, enabled=progress) as bar:
        for i in range(iterations):
            history.append(condenser.iteration(generator))
            bar.update(i + 1, {k: v for k, v in history[-1].items() if k == "loss"})
    return Condensation(condenser.synthetic, history, time.perf_counter() - started)


def condense(dataset, method: str = "dm", ipc: int = 10, *, iterations: int = 1000, init: str = "real",
             dsa: bool = True, network: str = "convnet", width: int = 32, depth: int = 3, seed: int = 0,
             options: dict | None = None, experts: dict | None = None, progress: bool = False) -> Condensation:
    """Condense ``dataset`` into ``ipc`` synthetic images per class with ``method`` (dc, dsa, dm, mtt).

    The set starts from random real images (``init="real"``) or noise, and is learned for
    ``iterations`` outer iterations against freshly initialised ``network``s, with Siamese
    augmentation when ``dsa``. MTT first trains its experts: ``experts`` sets count, epochs, lr,
    batch_size (``train_expert_trajectories``). Returns the set with its loss history.

    >>> result = condense("digits", "dm", ipc=1, iterations=5)   # doctest: +SKIP
    >>> result.synthetic.images.shape
    torch.Size([10, 1, 8, 8])
    """
    bank = class_bank(dataset)
    if init not in ("real", "noise"):
        raise ConfigError(f"init must be 'real' or 'noise', got {init!r}.")
    if not isinstance(iterations, int) or iterations < 1:
        raise ConfigError(f"iterations must be a positive integer, got {iterations!r}.")
    options = dict(options or {})
    CONDENSERS.get(method).check_options(options, ipc)
    factory = network_factory(network, bank, width, depth)
    augment = DSA() if dsa else None
    synthetic, generator = seeded_start(bank, ipc, init, seed)
    if method == "mtt" and "trajectories" not in options:
        options["trajectories"] = train_expert_trajectories(bank, factory, generator=generator, augment=augment,
                                                            progress=progress, **{"experts": 5, "epochs": 10,
                                                                                  **(experts or {})})
    condenser = CONDENSERS.get(method)(synthetic, bank, factory, augment, **options)
    return run_condenser(condenser, iterations, generator, progress, f"{method} ipc={ipc}")
