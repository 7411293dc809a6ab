"""Registry of offline datasets and the split container they return."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch.utils.data import Dataset

from distill.registry import Registry

DATASETS: Registry = Registry("dataset")


@dataclass
class DataSplits:
    """Train/test datasets of ``(input, label)`` pairs plus what a model needs to know.

    ``input_shape`` excludes the batch dimension. ``transfer`` is an optional
    unlabeled set whose items are ``(input, IGNORE_INDEX)``: the teacher labels it.
    """

    train: Dataset
    test: Dataset
    input_shape: tuple[int, ...]
    num_classes: int
    transfer: Dataset | None = None
    name: str = "custom"
    extra: dict = field(default_factory=dict)
