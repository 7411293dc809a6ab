"""The launched process group outside the engine's ``train`` (loops of their own, such as dataset condensation):
which process this is, and a sum over every process."""

from __future__ import annotations

import os

import torch
from accelerate import PartialState
from torch import Tensor


def process_share() -> tuple[int, int]:
    """(this process's index, the number of processes): ``(0, 1)`` unless launched with several (``WORLD_SIZE``),
    where the process group is joined as the engine joins it (gloo on a machine without GPUs)."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1
    state = PartialState(cpu=not torch.cuda.is_available())
    return state.process_index, state.num_processes


def sum_over_processes(value: Tensor) -> Tensor:
    """``value`` summed over every process (every process gets the sum); ``value`` itself under one process."""
    if process_share()[1] == 1:
        return value
    summed = value.detach().clone()
    torch.distributed.all_reduce(summed)
    return summed
