"""Hold out part of the training set for tuning, so no choice is ever made on the test set."""

from __future__ import annotations

import dataclasses

import torch
from torch.utils.data import Dataset, Subset

from distill.data.base import DataSplits
from distill.data.tensors import InMemoryDataset
from distill.errors import DistillError


def _take(dataset: Dataset, indices: torch.Tensor) -> Dataset:
    if isinstance(dataset, InMemoryDataset):
        return InMemoryDataset(dataset.x[indices], dataset.y[indices])
    return Subset(dataset, indices.tolist())


def with_validation(splits: DataSplits, size: int, seed: int = 0) -> DataSplits:
    """Splits whose ``test`` is ``size`` random training samples and whose ``train`` is the rest.

    Use it to tune hyperparameters; report final numbers on the real test set.
    """
    if not 0 < size < len(splits.train):
        raise DistillError(f"validation size must be between 1 and {len(splits.train) - 1}, got {size}.")
    order = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(seed))
    return dataclasses.replace(
        splits,
        train=_take(splits.train, order[size:]),
        test=_take(splits.train, order[:size]),
        name=f"{splits.name} (validation split of {size})",
    )
