"""The classification family's evaluation: accuracy and cross-entropy on a data set, across processes."""

from __future__ import annotations

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from distill.data import collate_batches
from distill.losses.base import IGNORE_INDEX
from distill.metrics.classification import hits


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
        correct += float(hits(logits, y)[0])
        loss_sum += float(nn.functional.cross_entropy(logits[labelled], y[labelled], reduction="sum"))
        total += float(labelled.sum())
    model.train(was_training)
    return {"acc": correct / max(total, 1.0), "loss": loss_sum / max(total, 1.0)}
