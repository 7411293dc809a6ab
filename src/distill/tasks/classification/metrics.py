"""Classification metrics: accuracy, parameter count and CPU latency per sample."""

from __future__ import annotations

import copy
import time

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from distill.data import collate_batches
from distill.losses.base import IGNORE_INDEX


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module, dataset: Dataset, accelerator: Accelerator | None = None, batch_size: int = 1000
) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``dataset`` (gathered over processes)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_batches)
    device = next(model.parameters()).device
    if accelerator is not None:
        loader = accelerator.prepare_data_loader(loader)
    was_training = model.training
    model.eval()
    correct, total, loss_sum = 0.0, 0.0, 0.0
    for x, y in loader:
        logits = model(x.to(device)).float()
        y = y.to(device)
        if accelerator is not None:
            logits, y = accelerator.gather_for_metrics((logits, y))
        labelled = y != IGNORE_INDEX
        correct += float((logits.argmax(-1)[labelled] == y[labelled]).sum())
        loss_sum += float(nn.functional.cross_entropy(logits[labelled], y[labelled], reduction="sum"))
        total += float(labelled.sum())
    model.train(was_training)
    return {"acc": correct / max(total, 1.0), "loss": loss_sum / max(total, 1.0)}


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
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
