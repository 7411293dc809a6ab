"""In-memory datasets whose batches are gathered in one indexing operation.

A ``DataLoader`` normally fetches a batch as ``[dataset[i] for i in indices]``
and stacks the samples one by one. :class:`InMemoryDataset` implements
``__getitems__`` (the hook torch's map-style fetcher calls when present) and
returns a :class:`SampleBatch`: both tensors indexed once. :func:`collate_batches`
passes those through and defers to ``default_collate`` for anything else, so
:func:`make_loader` works with any ``Dataset`` of ``(input, label)`` pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, default_collate

from distill.errors import DistillError, check_count


class SampleBatch(Sequence):
    """Samples ``(x[i], y[i])`` already gathered into two batched tensors.

    It is also a sequence of per-sample pairs, so torch's ``default_collate``
    (a plain ``DataLoader``) still stacks it correctly, only without the speed-up.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


class InMemoryDataset(Dataset):
    """``(x[i], y[i])`` pairs over two tensors with the same first dimension."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) != len(y):
            raise DistillError(
                f"InMemoryDataset got {len(x)} inputs but {len(y)} labels; need one label each."
            )
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]

    def __getitems__(self, indices: list[int]) -> SampleBatch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return SampleBatch(self.x[idx], self.y[idx])


class NamedBatch(dict):
    """A batch already gathered as ``{name: tensor}`` (what :class:`TensorDictDataset` returns)."""


class TensorDictDataset(Dataset):
    """Samples ``{name: tensor[i]}`` over named tensors of one length, e.g. a teacher's
    ``{"sample", "noise", "y"}`` pairs or ``{"x", "teacher_x", "y"}`` paired sensor views."""

    def __init__(self, **tensors: torch.Tensor) -> None:
        lengths = {name: len(t) for name, t in tensors.items()}
        if not tensors or len(set(lengths.values())) != 1:
            raise DistillError(f"TensorDictDataset needs named tensors of one length, got lengths {lengths}.")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {name: t[i] for name, t in self.tensors.items()}

    def __getitems__(self, indices: list[int]) -> NamedBatch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return NamedBatch({name: t[idx] for name, t in self.tensors.items()})


def collate_batches(batch: SampleBatch | NamedBatch | list) -> list | dict:
    """Pass a :class:`SampleBatch` through as ``[x, y]`` and a :class:`NamedBatch` as a dict;
    otherwise ``default_collate``."""
    if isinstance(batch, SampleBatch):
        return [batch.x, batch.y]
    if isinstance(batch, NamedBatch):
        return dict(batch)
    return default_collate(batch)


def concat_datasets(*datasets: Dataset) -> Dataset:
    """One dataset of all items in order; in-memory datasets stay one :class:`InMemoryDataset`."""
    if all(isinstance(d, InMemoryDataset) for d in datasets):
        shapes = {tuple(d.x.shape[1:]) for d in datasets}
        if len(shapes) > 1:
            raise DistillError(f"cannot concatenate datasets of input shapes {sorted(shapes)}.")
        return InMemoryDataset(
            torch.cat([d.x for d in datasets]), torch.cat([d.y for d in datasets])
        )
    return ConcatDataset(datasets)


def make_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False
) -> DataLoader:
    """A single-process ``DataLoader`` whose shuffling depends only on ``seed``.

    Batches are ``[inputs, labels]`` lists, exactly as torch's default collation
    gives; an :class:`InMemoryDataset` (or a ``Subset`` of one) is indexed once
    per batch instead of once per sample.
    """
    check_count("batch_size", batch_size)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        generator=generator,
        num_workers=0,
        collate_fn=collate_batches,
    )
