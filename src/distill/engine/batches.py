"""Batches are mappings of named tensors: ``{"x", "y"}``, ``{"input_ids", "attention_mask", "labels"}``,
``{"noise", "target"}``. A user's ``(x, y)`` tuples become ``{"x": x, "y": y}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from distill.errors import DistillError

Batch = dict[str, Any]


def as_batch(item: Any) -> Batch:
    """``item`` as a mapping of named values; a pair ``(x, y)`` is named ``x`` and ``y``."""
    if isinstance(item, Mapping):
        return dict(item)
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return {"x": item[0], "y": item[1]}
    raise DistillError(f"a batch must be a mapping of named tensors or an (inputs, labels) pair, got "
                       f"{type(item).__name__}{f' of {len(item)} items' if isinstance(item, (list, tuple)) else ''}; "
                       "return a dict such as {'x': ..., 'y': ...} from your dataset.")


def batch_size_of(batch: Batch) -> int:
    """The leading dimension of the first tensor in ``batch``."""
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.dim():
            return len(value)
    raise DistillError(f"the batch holds no tensor with a batch dimension (keys {sorted(batch)}).")

