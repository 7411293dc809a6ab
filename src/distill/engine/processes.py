"""The launched process group outside the engine's ``train`` (loops of their own, such as dataset condensation):
which process this is, and a sum over every process."""

from __future__ import annotations

import os

import torch
from accelerate import PartialState
from torch import Tensor


def _state() -> PartialState | None:
    """Accelerate's process state when launched with several processes (``WORLD_SIZE``), joined as the engine joins
    it (gloo on a machine without GPUs); None for one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return None
    return PartialState(cpu=not torch.cuda.is_available())


def process_share() -> tuple[int, int]:
    """(this process's index, the number of processes); ``(0, 1)`` for one process."""
    state = _state()
    return (0, 1) if state is None else (state.process_index, state.num_processes)


def sum_over_processes(value: Tensor) -> Tensor:
    """``value`` (detached) summed over every process, on ``value``'s device; every process gets the sum."""
    state = _state()
    if state is None or state.num_processes == 1:
        return value.detach()
    summed = value.detach().to(state.device, copy=True)  # NCCL reduces tensors on the process's GPU only
    torch.distributed.all_reduce(summed)
    return summed.to(value.device)
