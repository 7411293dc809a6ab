"""A model's outputs, and the activations of one of its layers, over a tensor of inputs in batches."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from distill.errors import DistillError, check_count
from distill.taps import TapRecorder, parse_tap


def outputs(model: nn.Module, x: Tensor, batch_size: int) -> Iterator[Tensor]:
    """``model``'s outputs on ``x`` in batches of ``batch_size``, moved to the model's device (``x``'s for
    a model without weights), in eval mode without grad; the model's train/eval mode is restored."""
    if not isinstance(x, Tensor):
        raise DistillError(f"samples must be a torch tensor, got {type(x).__name__}.")
    batch_size = check_count("batch_size", batch_size)
    device = next(model.parameters(), x).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in x.split(batch_size):
                yield model(batch.to(device))
    finally:
        model.train(was_training)


def features(model: nn.Module, x: Tensor, layer: str = "head.1", batch_size: int = 500) -> Tensor:
    """Per-sample features (n, f) at the tap ``layer`` of a classifier (:mod:`distill.taps`), flattened.

    For the repository's image ConvNet, ``"head.1"`` is the pooled penultimate feature;
    Fréchet distance on it is an FID-like score with a locally trained network.
    """
    spec = parse_tap(layer)
    recorder = TapRecorder(model, [spec], "feature model")
    kept: list[Tensor] = []
    try:
        for _ in outputs(model, x, batch_size):
            kept.append(recorder.get(spec).detach().flatten(1).float().cpu())
    finally:
        recorder.remove()
    return torch.cat(kept)
