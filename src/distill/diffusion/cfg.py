"""Classifier-free guidance (Ho & Salimans, 2022): the null class, label dropout while training, and the
conditional and unconditional predictions of one network call on a doubled batch.

The null class is label ``NULL_CLASS`` (−1) everywhere: the denoiser networks embed any negative label
as their null class, and the exact denoisers read it as "the whole data set".
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from distill.engine import draws

NULL_CLASS = -1


def drop_labels(y: Tensor, drop: float) -> Tensor:
    """``y`` with each label replaced by the null class with probability ``drop``."""
    if not drop:
        return y
    dropped = draws.rand(len(y), y.device) < drop
    return torch.where(dropped, torch.full_like(y, NULL_CLASS), y)


def conditional_and_null(call: Callable, x: Tensor, t: Tensor, y: Tensor, d: Tensor | None = None):
    """``call(x, t, y, d)`` and ``call(x, t, null, d)`` from one call on the batch of 2B: two tensors, or
    two tuples of tensors when ``call`` returns a tuple (e.g. a denoiser's (x̂0, ε̂))."""
    both = call(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, NULL_CLASS)]),
                None if d is None else torch.cat([d, d]))
    if isinstance(both, Tensor):
        return tuple(both.chunk(2))
    halves = [part.chunk(2) for part in both]
    return tuple(half[0] for half in halves), tuple(half[1] for half in halves)


def guided(cond: Tensor, uncond: Tensor, scale: float | Tensor) -> Tensor:
    """``uncond + w·(cond − uncond)``, with ``w`` one number or one per row."""
    if isinstance(scale, Tensor):
        scale = scale.reshape(-1, *([1] * (cond.dim() - 1)))
    return uncond + scale * (cond - uncond)
