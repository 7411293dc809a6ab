"""Data for generative teachers: 2-D toys as drawn, image sets rescaled to [−1, 1], point sets as given."""

from __future__ import annotations

import dataclasses

from distill.data import DATASETS, load_dataset
from distill.data.base import DataSplits
from distill.data.points import POINT_SET_DATA
from distill.data.tensors import InMemoryDataset
from distill.data.toys import TOYS, toy_dataset
from distill.errors import ConfigError, closest

TOY_DEFAULTS = {"n_train": 20_000, "n_test": 5_000, "seed": 0}


def _tensors(dataset) -> tuple:
    if isinstance(dataset, InMemoryDataset):
        return dataset.x, dataset.y
    raise ConfigError(f"step distillation needs an in-memory dataset, got {type(dataset).__name__}.")


def check_generative_name(name: str) -> None:
    """Refuse ``name`` unless it is a 2-D toy or a registered data set — what generative teachers (step
    and score distillation) train on — with a message listing both kinds."""
    if name in TOYS or name in DATASETS:
        return
    hint = closest(name, [*TOYS, *DATASETS])
    did_you_mean = f" Did you mean {', '.join(repr(h) for h in hint)}?" if hint else ""
    raise ConfigError(f"unknown data {name!r}.{did_you_mean} Step and score distillation take a 2-D toy "
                      f"({', '.join(TOYS)}) or a registered data set ({', '.join(DATASETS)}; images such as "
                      "digits, mnist, or your own through arrays / image_folder).")


def is_point_sets(name: str) -> bool:
    """Whether the data set ``name``'s samples are point sets ``(N, 3)`` (:data:`POINT_SET_DATA`)."""
    return name in POINT_SET_DATA


def load_generative_data(name: str, options: dict | None = None) -> DataSplits:
    """A toy from :data:`TOYS` (options n_train, n_test, seed), point sets (:func:`is_point_sets`, in their own
    coordinates: a rescaling would distort the Chamfer distances they are scored by) or a registered image data
    set, whose pixels are mapped linearly so the training set spans exactly [−1, 1] (DDPM's range)."""
    check_generative_name(name)
    options = dict(options or {})
    if name in TOYS:
        unknown = set(options) - set(TOY_DEFAULTS)
        if unknown:
            raise ConfigError(f"toy data takes options {sorted(TOY_DEFAULTS)}, not {sorted(unknown)}.")
        return toy_dataset(name, **{**TOY_DEFAULTS, **options})
    splits = load_dataset(name, **options)
    if is_point_sets(name):
        return dataclasses.replace(splits, transfer=None)
    (x_train, y_train), (x_test, y_test) = _tensors(splits.train), _tensors(splits.test)
    low, high = x_train.min(), x_train.max()
    if not high > low:
        raise ConfigError(f"data set {name!r} has constant inputs; nothing to generate.")

    def scale(x):
        return (2 * (x - low) / (high - low) - 1).float()

    return dataclasses.replace(splits, train=InMemoryDataset(scale(x_train), y_train),
                               test=InMemoryDataset(scale(x_test), y_test), transfer=None)
