"""Bring your own data: arrays or torch datasets, checked once, returned as :class:`DataSplits`.

Every check fails with a :class:`DistillError` that names the argument, the
problem and the fix, before any training starts.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from distill.data.base import DataSplits
from distill.data.tensors import InMemoryDataset
from distill.errors import DistillError, check_int
from distill.losses.base import IGNORE_INDEX

ArrayLike = np.ndarray | torch.Tensor


def from_arrays(
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_test: ArrayLike,
    y_test: ArrayLike,
    transfer: ArrayLike | None = None,
    num_classes: int | None = None,
) -> DataSplits:
    """Splits from NumPy arrays or tensors: inputs ``(N, ...)`` floating, labels ``(N,)`` integer.

    Inputs become float32 and labels int64 (no copy where they already are).
    ``transfer`` holds unlabeled inputs only; its labels are ``IGNORE_INDEX``.
    ``num_classes`` defaults to the largest label plus one. Test classes that no training
    label has are kept but warned of: nothing trained on ``y_train`` can predict them.
    """
    xtr = _inputs("x_train", x_train)
    ytr = _labels("y_train", y_train, "x_train", len(xtr))
    xte = _inputs("x_test", x_test)
    yte = _labels("y_test", y_test, "x_test", len(xte))
    input_shape = tuple(xtr.shape[1:])
    _same_shape("x_test", tuple(xte.shape[1:]), input_shape)
    num_classes = _num_classes(num_classes, {"y_train": ytr, "y_test": yte})
    _warn_untrained_classes(ytr, yte, num_classes)
    transfer_set = None
    if transfer is not None:
        xtf = _inputs("transfer", transfer)
        _same_shape("transfer", tuple(xtf.shape[1:]), input_shape)
        transfer_set = InMemoryDataset(xtf, torch.full((len(xtf),), IGNORE_INDEX, dtype=torch.long))
    return DataSplits(
        train=InMemoryDataset(xtr, ytr),
        test=InMemoryDataset(xte, yte),
        input_shape=input_shape,
        num_classes=num_classes,
        transfer=transfer_set,
    )


def from_unlabelled_arrays(x_train: ArrayLike, x_test: ArrayLike) -> DataSplits:
    """Splits of inputs without labels (what a generative model learns from): every label is
    ``IGNORE_INDEX`` and ``num_classes`` is 0, so nothing that needs classes can take them."""
    xtr, xte = _inputs("x_train", x_train), _inputs("x_test", x_test)
    _same_shape("x_test", tuple(xte.shape[1:]), tuple(xtr.shape[1:]))

    def unlabelled(x: torch.Tensor) -> InMemoryDataset:
        return InMemoryDataset(x, torch.full((len(x),), IGNORE_INDEX, dtype=torch.long))

    return DataSplits(train=unlabelled(xtr), test=unlabelled(xte), input_shape=tuple(xtr.shape[1:]), num_classes=0)


def require_labels(splits: DataSplits, family: str) -> DataSplits:
    """``splits`` if they are labelled; unlabelled data (``unlabelled: true``) is for step and score
    distillation only."""
    if not splits.num_classes:
        raise DistillError(f"{family} needs labelled data, but this data set has no labels (unlabelled: true); "
                           "give labels, or use unlabelled images in step or score distillation.")
    return splits


def from_datasets(
    train: Dataset, test: Dataset, transfer: Dataset | None = None, *, num_classes: int
) -> DataSplits:
    """Splits from any torch datasets whose items are ``(input, label)`` pairs.

    ``input_shape`` is read from the first training item; only the first item of
    each set is checked, so a large or lazily decoded dataset is not read here.
    ``transfer`` items may be inputs or ``(input, anything)``; their labels are
    replaced by ``IGNORE_INDEX``.
    """
    num_classes = _num_classes(num_classes, {})
    input_shape = _first_input_shape("train", train, num_classes)
    _same_shape("test", _first_input_shape("test", test, num_classes), input_shape)
    transfer_set = None
    if transfer is not None:
        _same_shape("transfer", _first_input_shape("transfer", transfer, None), input_shape)
        transfer_set = UnlabeledDataset(transfer)
    return DataSplits(
        train=train,
        test=test,
        input_shape=input_shape,
        num_classes=num_classes,
        transfer=transfer_set,
    )


class UnlabeledDataset(Dataset):
    """Items ``(input, IGNORE_INDEX)`` from a dataset of inputs or ``(input, label)`` pairs."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        item = self.dataset[i]
        return (item[0] if isinstance(item, tuple | list) else item), IGNORE_INDEX


def _tensor(name: str, value: Any) -> torch.Tensor:
    """``value`` as a CPU tensor sharing memory where possible; at least one sample."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
    elif isinstance(value, np.ndarray):
        try:
            tensor = torch.from_numpy(np.ascontiguousarray(value))
        except TypeError:
            raise DistillError(
                f"{name} has NumPy dtype {value.dtype}, which torch cannot hold; "
                f"convert it to numbers, e.g. {name}.astype('float32')."
            ) from None
    else:
        raise DistillError(
            f"{name} must be a NumPy array or a torch tensor, got {type(value).__name__}; "
            f"convert it with numpy.asarray({name})."
        )
    if tensor.ndim == 0 or len(tensor) == 0:
        raise DistillError(
            f"{name} is empty (shape {tuple(tensor.shape)}); pass at least one sample."
        )
    return tensor


def _check_floating(name: str, dtype: Any) -> None:
    if isinstance(dtype, torch.dtype):
        floating = dtype.is_floating_point
    else:
        floating = np.issubdtype(dtype, np.floating)
    if not floating:
        raise DistillError(
            f"{name} has dtype {dtype}; inputs must be floating point. Convert them, e.g. "
            f"{name}.astype('float32') / 255 for 8-bit images."
        )


def _inputs(name: str, value: Any) -> torch.Tensor:
    tensor = _tensor(name, value)
    _check_floating(name, tensor.dtype)
    if tensor.ndim < 2:
        raise DistillError(
            f"{name} has shape {tuple(tensor.shape)}; inputs need a sample axis and at least one "
            f"feature axis, (N, ...). Reshape one feature per sample with {name}.reshape(-1, 1)."
        )
    tensor = tensor.to(torch.float32)
    bad = ~torch.isfinite(tensor.flatten(1)).all(dim=1)
    if bad.any():
        first = int(bad.nonzero()[0])
        raise DistillError(
            f"{name} has NaN or infinite values (as float32) in {int(bad.sum())} samples, first at "
            f"index {first}; remove or impute them."
        )
    return tensor


def _labels(name: str, value: Any, inputs_name: str, n_inputs: int) -> torch.Tensor:
    tensor = _tensor(name, value)
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise DistillError(
            f"{name} has dtype {tensor.dtype}; labels must be integer class indices. "
            f"Convert them with {name}.astype('int64')."
        )
    if tensor.ndim != 1:
        raise DistillError(
            f"{name} has shape {tuple(tensor.shape)}; labels must be one class index per sample, "
            f"shape (N,). For one-hot labels pass {name}.argmax(1)."
        )
    if len(tensor) != n_inputs:
        raise DistillError(
            f"{inputs_name} has {n_inputs} samples but {name} has {len(tensor)} labels; "
            "pass one label per input."
        )
    if (tensor < 0).any():
        raise DistillError(
            f"{name} has negative labels (smallest {int(tensor.min())}); labels must be "
            "0..num_classes-1. Put unlabeled samples in transfer= instead."
        )
    return tensor.to(torch.long)


def _num_classes(num_classes: int | None, labels: dict[str, torch.Tensor]) -> int:
    """Validate ``num_classes`` against every label set, or infer it as the largest label + 1."""
    largest = {name: int(y.max()) for name, y in labels.items()}
    if num_classes is None:
        if not largest:
            raise DistillError(
                "num_classes is required here: pass num_classes=<number of classes>."
            )
        num_classes = max(largest.values()) + 1
        if num_classes < 2:
            raise DistillError(
                f"{' and '.join(labels)} hold only class 0; classification needs 2 classes or more."
            )
        return num_classes
    check_int("num_classes", num_classes, least=2)
    for name, top in largest.items():
        if top >= num_classes:
            raise DistillError(
                f"{name} has label {top} but num_classes={num_classes}; labels must be "
                f"0..{num_classes - 1}. Pass num_classes={top + 1} or fix the labels."
            )
    return num_classes


def _warn_untrained_classes(y_train: torch.Tensor, y_test: torch.Tensor, num_classes: int) -> None:
    """A warning naming the test classes that no training sample has."""
    tested = torch.bincount(y_test, minlength=num_classes) > 0
    untrained = tested & (torch.bincount(y_train, minlength=num_classes) == 0)
    if untrained.any():
        classes = untrained.nonzero().flatten()
        count = int(torch.isin(y_test, classes).sum())
        warnings.warn(
            f"y_test holds class(es) {classes.tolist()} ({count} samples) that y_train never has; nothing "
            f"trained on y_train can predict them, so they only lower the test accuracy (num_classes={num_classes} "
            "counts them). Check that both splits number their classes alike, or drop those samples.",
            stacklevel=3,
        )


def _same_shape(name: str, shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    if shape != expected:
        raise DistillError(
            f"{name} samples have shape {shape} but training samples have shape {expected}; "
            "every split must hold inputs of one shape."
        )


def _first_input_shape(name: str, dataset: Any, num_classes: int | None) -> tuple[int, ...]:
    """Check the first item of ``dataset`` (a labelled pair unless ``num_classes`` is None)."""
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise DistillError(
            f"{name} must be a map-style torch Dataset (with __getitem__ and __len__), "
            f"got {type(dataset).__name__}; for arrays use from_arrays()."
        )
    if len(dataset) == 0:
        raise DistillError(f"{name} is empty; pass a dataset with at least one sample.")
    item = dataset[0]
    is_pair = isinstance(item, tuple | list) and len(item) == 2
    if num_classes is not None and not is_pair:
        raise DistillError(
            f"{name}[0] is a {type(item).__name__}, not an (input, label) pair; "
            "make __getitem__ return (input, label)."
        )
    x = item[0] if isinstance(item, tuple | list) else item
    if not isinstance(x, torch.Tensor | np.ndarray):
        raise DistillError(
            f"{name}[0] input is a {type(x).__name__}; return a tensor or NumPy array, "
            "e.g. with torchvision.transforms.ToTensor()."
        )
    _check_floating(f"{name}[0] input", x.dtype)
    if num_classes is not None:
        _check_label(name, item[1], num_classes)
    return tuple(x.shape)


def _check_label(name: str, label: Any, num_classes: int) -> None:
    value = (
        label.item() if isinstance(label, torch.Tensor | np.ndarray) and label.ndim == 0 else label
    )
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or not 0 <= value < num_classes
    ):
        raise DistillError(
            f"{name}[0] label is {label!r}; labels must be integer class indices "
            f"0..{num_classes - 1} (num_classes={num_classes})."
        )
