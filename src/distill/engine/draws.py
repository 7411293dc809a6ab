"""Random draws of one value per sample that do not depend on how a global batch is split between processes.

Under N processes each process holds rows ``[i·b, (i+1)·b)`` of a global batch of ``N·b`` (Accelerate's
``split_batches``) and every process's global RNG starts from the same seed. A plain ``torch.randn_like(x)`` in
an objective would give every process the same noise (the N parts of a batch would share their draws) and
differ from a one-process run. The draws here take the whole global batch's worth from the global RNG on every
process, so the processes' RNGs stay in step, and keep this process's rows: each sample gets what one process
with the whole batch would have drawn for it. The engine's ``train`` sets the split around each forward
(:func:`batch_split`); anywhere else (sampling, evaluation, one process) they are the plain torch draws.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

import torch
from torch import Tensor

#: (this process's index, the number of processes) the current forward's batch is split between
_SPLIT: ContextVar[tuple[int, int]] = ContextVar("batch_split", default=(0, 1))


class batch_split:  # noqa: N801 - used as a context manager, like torch.no_grad
    """Within this context, the draws below treat a batch as part ``index`` of ``count`` equal parts."""

    def __init__(self, index: int, count: int) -> None:
        self.split, self.token = (index, count), None

    def __enter__(self) -> None:
        self.token = _SPLIT.set(self.split)

    def __exit__(self, *exc) -> None:
        _SPLIT.reset(self.token)


def per_sample(n: int, draw: Callable[[int], Tensor]) -> Tensor:
    """This process's ``n`` rows of ``draw(n · processes)``: ``draw(m)`` returns ``m`` rows of random values."""
    index, count = _SPLIT.get()
    if count == 1:
        return draw(n)
    return draw(n * count)[index * n:(index + 1) * n]


def randn_like(x: Tensor) -> Tensor:
    """Standard normal noise shaped like ``x`` (rows are samples)."""
    return per_sample(len(x), lambda m: torch.randn((m, *x.shape[1:]), dtype=x.dtype, device=x.device))


def rand(n: int, device: torch.device | str | None = None) -> Tensor:
    """``n`` uniform values in [0, 1), one per sample."""
    return per_sample(n, lambda m: torch.rand(m, device=device))


def randint(low: int, high: int, n: int, device: torch.device | str | None = None) -> Tensor:
    """``n`` integers in [low, high), one per sample."""
    return per_sample(n, lambda m: torch.randint(low, high, (m,), device=device))
