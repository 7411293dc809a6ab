"""Offline datasets by name, and the same splits from the user's own arrays or datasets."""

from distill.data import (  # noqa: F401  (each registers a loader)
    basicmotions,
    digits,
    files,
    japanese_vowels,
    mnist,
    mnist1d,
    osuleaf,
    points,
)
from distill.data.alignment import euclidean_alignment
from distill.data.base import DATASETS, DataSplits
from distill.data.custom import from_arrays, from_datasets
from distill.data.tensors import InMemoryDataset, TensorDictDataset, collate_batches, concat_datasets, make_loader
from distill.data.toys import TOYS, sample_toy
from distill.data.validation import with_validation
from distill.data.views import PairedViews, student_views


def load_dataset(name: str, **kwargs) -> DataSplits:
    """The splits of the registered dataset ``name``; unknown names list the valid ones."""
    return DATASETS.build(name, **kwargs)


__all__ = [
    "DATASETS",
    "DataSplits",
    "InMemoryDataset",
    "TensorDictDataset",
    "PairedViews",
    "collate_batches",
    "concat_datasets",
    "euclidean_alignment",
    "TOYS",
    "from_arrays",
    "sample_toy",
    "from_datasets",
    "load_dataset",
    "make_loader",
    "student_views",
    "with_validation",
]
