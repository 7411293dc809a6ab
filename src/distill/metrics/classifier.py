"""The feature classifier image metrics read: trained by distill on the run's own data, cached like teachers."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from distill.data.base import DataSplits
from distill.engine.cache import data_identity, fit_or_load
from distill.engine.config import TRAIN_ONLY, StrictModel, TrainConfig
from distill.models import build_model
from distill.models.base import frozen
from distill.supervised import SupervisedObjective


class ClassifierSpec(StrictModel):
    """The classifier whose features the image metrics use; trained by distill on the same data."""

    model: str = "convnet"
    options: dict[str, Any] = Field(default_factory=lambda: {"channels": [16, 32, 32]})
    layer: str = "head.1"
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=2, batch_size=100, lr=3e-3))


def obtain_metric_classifier(data: dict, spec: ClassifierSpec, splits: DataSplits, run) -> nn.Module | None:
    """The feature classifier of the image metrics, cached like teachers; None for 2-D data and for
    unlabelled images (scored in pixel space then: sliced W2 and MMD). ``data`` identifies the
    training data in the cache key (a recipe's data section)."""
    if len(splits.input_shape) < 2 or not splits.num_classes:
        return None
    torch.manual_seed(spec.train.seed)
    model = build_model(spec.model, splits.input_shape, splits.num_classes, **spec.options)
    cache_spec = {"kind": "metric-classifier", "data": data_identity(data, splits), "model": spec.model,
                  "options": spec.options, "train": spec.train.model_dump(mode="json", exclude=TRAIN_ONLY)}

    def fit() -> dict:
        return {"seconds": run.train(SupervisedObjective(model), splits.train, spec.train, "classifier").seconds}

    fit_or_load(model, cache_spec, fit)
    return frozen(model)
