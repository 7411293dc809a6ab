"""Accuracy: the share of labelled rows whose arg-max is their label, for every family."""

from __future__ import annotations

from torch import Tensor, nn

from distill.errors import DistillError
from distill.losses.base import IGNORE_INDEX
from distill.metrics.features import outputs


def hits(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(rows whose arg-max over the last dimension is their label, labelled rows): two integer
    scalars; rows labelled ``IGNORE_INDEX`` count in neither."""
    labelled = target != IGNORE_INDEX
    return ((logits.argmax(dim=-1) == target) & labelled).sum(), labelled.sum()


def batch_accuracy(logits: Tensor, target: Tensor) -> Tensor:
    """Accuracy of one batch of logits as a tensor (0 when no row is labelled)."""
    correct, labelled = hits(logits, target)
    return correct / labelled.clamp(min=1)


def accuracy(model: nn.Module, x: Tensor, labels: Tensor, batch_size: int = 500) -> float:
    """Fraction of the rows of ``x`` whose arg-max under ``model`` is their label (a classifier's test
    accuracy, or the agreement of class-conditional samples with the labels they were drawn for),
    in batches in eval mode without grad; the model's train/eval mode is restored."""
    if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.is_floating_point():
        raise DistillError("labels must be a 1-D integer tensor of class indices.")
    if len(x) != len(labels) or len(labels) == 0:
        raise DistillError(
            f"got {len(x)} samples and {len(labels)} labels; "
            "pass one label per sample (and at least one)."
        )
    correct = total = 0
    for logits, target in zip(outputs(model, x, batch_size), labels.split(batch_size)):
        hit, labelled = hits(logits, target.to(logits.device))
        correct, total = correct + int(hit), total + int(labelled)
    return correct / max(total, 1)
