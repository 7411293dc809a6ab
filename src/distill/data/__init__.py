"""Offline datasets by name, and the same splits from the user's own arrays or datasets."""

from distill.data import digits, mnist, mnist1d  # noqa: F401  (each registers a loader)
from distill.data.base import DATASETS, DataSplits
from distill.data.custom import from_arrays, from_datasets
from distill.data.tensors import InMemoryDataset, collate_batches, concat_datasets, make_loader
from distill.data.validation import with_validation


def load_dataset(name: str, **kwargs) -> DataSplits:
    """The splits of the registered dataset ``name``; unknown names list the valid ones."""
    return DATASETS.build(name, **kwargs)


__all__ = [
    "DATASETS",
    "DataSplits",
    "InMemoryDataset",
    "collate_batches",
    "concat_datasets",
    "from_arrays",
    "from_datasets",
    "load_dataset",
    "make_loader",
    "with_validation",
]
