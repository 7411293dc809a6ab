"""``condense``: a real training set in, a synthetic set of ``ipc`` images per class out."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from distill.data import InMemoryDataset, make_loader
from distill.data.base import DATASETS, DataSplits
from distill.engine.checkpoint import (
    Checkpoint,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from distill.engine.processes import process_share
from distill.engine.progress import progress_bar
from distill.errors import CheckpointError, ConfigError, check_count
from distill.models import build_model
from distill.tasks.dataset.augment import DSA
from distill.tasks.dataset.experts import train_expert_trajectories
from distill.tasks.dataset.methods import CONDENSERS
from distill.tasks.dataset.recipe import ARCHITECTURES
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


def class_bank(dataset: DataSplits | ClassBank | Dataset | tuple[Tensor, Tensor] | str) -> ClassBank:
    """The training images of ``dataset`` grouped by class: a registered name (``mnist``, ``digits``), a
    ``DataSplits`` (its ``train``), any map-style dataset of ``(image, label)`` pairs (a ``TensorDataset``, your
    own ``Dataset``), an ``(images, labels)`` pair of tensors or arrays, or a ClassBank (returned as is). Images are
    floating point ``(C, H, W)``; labels integers ``0..num_classes-1`` (a DataSplits' ``num_classes``, otherwise the
    largest label plus one)."""
    if isinstance(dataset, ClassBank):
        return dataset
    if isinstance(dataset, str):
        dataset = DATASETS.build(dataset)
    if isinstance(dataset, DataSplits):
        images, labels = _pairs(dataset.train, f"{dataset.name} (train)")
        return _bank(images, labels, dataset.num_classes, dataset.name)
    if isinstance(dataset, tuple) and len(dataset) == 2:
        images, labels = (torch.as_tensor(t) for t in dataset)
        return _bank(images, labels, None, "the (images, labels) pair")
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
        images, labels = _pairs(dataset, type(dataset).__name__)
        return _bank(images, labels, None, type(dataset).__name__)
    raise ConfigError(f"condense takes a dataset name, a DataSplits, a dataset of (image, label) pairs, an (images, "
                      f"labels) pair or a ClassBank; got {type(dataset).__name__}.")


def _pairs(dataset, what: str) -> tuple[Tensor, Tensor]:
    """Every item of a map-style dataset of ``(image, label)`` pairs, as an images tensor and a labels tensor."""
    if isinstance(dataset, InMemoryDataset):
        return dataset.x, dataset.y
    if len(dataset) == 0:
        raise ConfigError(f"{what} is empty; condense needs real images of every class.")
    first = dataset[0]
    if not (isinstance(first, tuple | list) and len(first) == 2):
        raise ConfigError(f"{what}[0] is a {type(first).__name__}"
                          f"{f' of {len(first)}' if isinstance(first, tuple | list) else ''}; condense takes a "
                          "dataset of (image, label) pairs: make __getitem__ return (image, label).")
    images, labels = next(iter(make_loader(dataset, len(dataset), shuffle=False)))
    return torch.as_tensor(images), torch.as_tensor(labels)


def _bank(images: Tensor, labels: Tensor, num_classes: int | None, what: str) -> ClassBank:
    """The ClassBank of checked images and labels (``num_classes`` None: the largest label plus one)."""
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.dim() != 1:
        raise ConfigError(f"{what} has labels of dtype {labels.dtype} and shape {tuple(labels.shape)}; labels are "
                          "integer class indices, one per image.")
    if len(labels) == 0:
        raise ConfigError(f"{what} is empty; condense needs real images of every class.")
    if images.dim() != 4:
        raise ConfigError(f"dataset distillation condenses images (N, C, H, W); {what} has inputs of shape "
                          f"{tuple(images.shape[1:])} per sample.")
    if not images.is_floating_point():
        raise ConfigError(f"{what} has images of dtype {images.dtype}; pass floating-point images, e.g. "
                          "images.float() / 255 for 8-bit pixels.")
    return ClassBank(images, labels, int(labels.max()) + 1 if num_classes is None else num_classes)


def build_network(name: str, image_shape: tuple[int, int, int], num_classes: int, width: int = 32,
                  depth: int = 3) -> nn.Module:
    """A freshly (randomly) initialised network ``name`` ("convnet", "mlp" or "resnet": the ``distill.models``
    entry ``ARCHITECTURES[name]``) for ``image_shape = (C, H, W)`` images and ``num_classes`` classes.

    Raises ``ConfigError`` for an unknown name, a non-positive size, or an image too small
    for the network's ``depth`` poolings.
    """
    if name not in ARCHITECTURES:
        raise ConfigError(f"unknown dataset-distillation network {name!r}; valid networks: {', '.join(ARCHITECTURES)}.")
    return build_model(ARCHITECTURES[name], image_shape, num_classes, width=width, depth=depth)


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
                  label: str = "condense", *, folder: Path | None = None, every: int = 0, resume: bool = False,
                  key: str = "") -> Condensation:
    """``iterations`` outer iterations of ``condenser``: its set, the logged numbers of each, the time taken.

    With a ``folder``, the condensation is checkpointed under ``folder/checkpoints`` every ``every``
    iterations and at the end (atomically, by :func:`distill.engine.checkpoint.save_checkpoint`): what
    the method learns (``condenser.learned()``: images, soft labels, MTT's step size), its optimizers,
    ``generator``, the global RNG, the history and the time so far. With ``resume`` the newest checkpoint
    is restored and the condensation goes on from there, to the same set an uninterrupted run makes;
    ``key`` (the recipe parts the condensation was made from) must match the checkpoint's.
    """
    history: list[dict[str, float]] = []
    done, spent = 0, 0.0
    checkpoints = Path(folder) / "checkpoints" if folder is not None else None
    if resume and checkpoints is not None and (last := latest_checkpoint(checkpoints)) is not None:
        done, history, spent = _restore(condenser, generator, load_checkpoint(last, expected=condenser.learned()), key)
    started = time.perf_counter() - spent

    def checkpoint(step: int) -> None:
        if process_share()[0]:  # every process holds the same set: the main one writes it
            return
        state = {"optimizers": {k: o.state_dict() for k, o in condenser.optimizers().items()},
                 "generator": generator.get_state(), "rng": rng_state(), "history": history,
                 "seconds": time.perf_counter() - started}
        save_checkpoint(checkpoints, step, {k: v.detach() for k, v in condenser.learned().items()}, state,
                        {"description": label, "key": key})

    with progress_bar(label, iterations, completed=done, enabled=progress and not process_share()[0]) as bar:
        for i in range(done, iterations):
            history.append(condenser.iteration(generator))
            bar.update(i + 1, {k: v for k, v in history[-1].items() if k == "loss"})
            if checkpoints is not None and ((every and (i + 1) % every == 0) or i + 1 == iterations):
                checkpoint(i + 1)
    return Condensation(condenser.synthetic, history, time.perf_counter() - started)


def _restore(condenser, generator: torch.Generator, ckpt: Checkpoint, key: str) -> tuple[int, list, float]:
    """Put a condensation checkpoint back into ``condenser`` and ``generator``: (iterations done, history, seconds)."""
    if ckpt.meta.get("key", "") != key:
        raise CheckpointError(f"the condensation checkpoint at step {ckpt.step} was made from another recipe (key "
                              f"{ckpt.meta.get('key')!r}, this one {key!r}); run without --resume to start afresh.")
    with torch.no_grad():
        for name, tensor in condenser.learned().items():
            tensor.copy_(ckpt.weights[name])
    for name, optimizer in condenser.optimizers().items():
        optimizer.load_state_dict(ckpt.state["optimizers"][name])
    generator.set_state(ckpt.state["generator"])
    set_rng_state(ckpt.state["rng"])
    return ckpt.step, list(ckpt.state["history"]), float(ckpt.state["seconds"])


def condense(dataset, method: str = "dm", ipc: int = 10, *, iterations: int = 1000, init: str = "real",
             dsa: bool = True, network: str | Callable[[], nn.Module] = "convnet", width: int = 32, depth: int = 3,
             tap: str = "features", seed: int = 0, options: dict | None = None, experts: dict | None = None,
             progress: bool = False) -> Condensation:
    """Condense ``dataset`` into ``ipc`` synthetic images per class with ``method`` (dc, dsa, dm, mtt).

    ``dataset`` is anything :func:`class_bank` takes: a registered name, a ``DataSplits``, any map-style
    dataset of ``(image, label)`` pairs, an ``(images, labels)`` pair. Images are used as given; the
    methods assume each channel standardised to zero mean and unit variance (as MNIST is loaded).

    The set starts from random real images (``init="real"``) or noise, and is learned for
    ``iterations`` outer iterations against freshly initialised ``network``s (a name of
    ``ARCHITECTURES`` at ``width`` and ``depth``, or your own function returning a fresh ``nn.Module``,
    whose feature vector is the output of module ``tap``), with Siamese augmentation when ``dsa``. MTT first trains its experts: ``experts`` sets count, epochs, lr,
    batch_size (``train_expert_trajectories``). Returns the set with its loss history.

    >>> result = condense("digits", "dm", ipc=1, iterations=5)   # doctest: +SKIP
    >>> result.synthetic.images.shape
    torch.Size([10, 1, 8, 8])
    """
    bank = class_bank(dataset)
    if init not in ("real", "noise"):
        raise ConfigError(f"init must be 'real' or 'noise', got {init!r}.")
    check_count("iterations", iterations)
    options = dict(options or {})
    CONDENSERS.check(method, options, ipc=ipc)
    factory = network if callable(network) else network_factory(network, bank, width, depth)
    augment = DSA() if dsa else None
    synthetic, generator = seeded_start(bank, ipc, init, seed)
    if method == "mtt" and "trajectories" not in options:
        options["trajectories"] = train_expert_trajectories(bank, factory, generator=generator, augment=augment,
                                                            progress=progress, **{"experts": 5, "epochs": 10,
                                                                                  **(experts or {})})
    condenser = CONDENSERS.get(method)(synthetic, bank, factory, augment, tap=tap, **options)
    return run_condenser(condenser, iterations, generator, progress, f"{method} ipc={ipc}")
