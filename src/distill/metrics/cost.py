"""What a model costs: its parameter count and its CPU latency per sample."""

from __future__ import annotations

import copy
import time

import torch
from torch import nn


def parameter_count(model: nn.Module) -> int:
    """Parameters of ``model``, tied (shared) weights counted once: the length of
    ``parameters_to_vector(model.parameters())``."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def cpu_latency_per_sample(model: nn.Module, example: torch.Tensor, batch_size: int = 1, repeats: int = 200) -> float:
    """Median seconds per sample of ``model`` on the CPU, one thread, at ``batch_size``.

    Measured on a CPU copy when the model lives elsewhere; the caller's model keeps its
    device and its train/eval mode.
    """
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    was_training = model.training
    timed = (model if on_cpu else copy.deepcopy(model).to("cpu")).eval()
    x = example[:1].to("cpu").expand(batch_size, *example.shape[1:]).contiguous()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(10):
            timed(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            timed(x)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
        model.train(was_training)
    times.sort()
    return times[len(times) // 2] / batch_size
