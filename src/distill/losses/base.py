"""The contract every distillation loss follows: tensors in, a scalar out."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from distill.registry import Registry

#: What a loss needs of the two tensors it compares, so adapters know what to build.
#: ``identical``: identical shapes and no projector makes sense (logits over the same classes).
#: ``same_shape``: identical shapes (a projector maps the student onto the teacher's shape).
#: ``same_spatial``: same batch and spatial size; channels may differ (resized without parameters).
#: ``same_positions``: both become channel-first maps of the same positions (points of one set), never
#: resized; the student's channels are projected onto the teacher's (a trainable 1×1 map).
#: ``same_batch``: only the batch size must agree (relations between samples).
#: ``multi_level``: lists of tensors from several taps per side; the loss fuses them itself.
Requirement = Literal["identical", "same_shape", "same_spatial", "same_positions", "same_batch", "multi_level"]

LOSSES: Registry = Registry("loss")

#: Label value meaning "no label" (an unlabeled transfer-set sample), as in ``F.cross_entropy``.
IGNORE_INDEX = -100


class DistillLoss(nn.Module):
    """Base class: ``forward(student, teacher, target=None)`` returns a scalar tensor.

    A loss receives tensors, never models. ``target`` holds class labels where the
    method uses them; entries equal to ``IGNORE_INDEX`` are unlabeled. A loss with
    ``supports_mask = True`` also takes ``forward(..., mask=m)``: a bool tensor over the
    leading positions (e.g. ``(B, L)`` for ``(B, L, V)`` token logits), false at padding.
    """

    requires: ClassVar[Requirement] = "same_shape"
    #: Which trainable projector maps student channels onto the teacher's (``same_shape`` only).
    projector: ClassVar[Literal["linear", "orthogonal"]] = "linear"
    needs_target: ClassVar[bool] = False
    #: Whether ``forward`` accepts ``mask=`` to leave padded positions out.
    supports_mask: ClassVar[bool] = False

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def pending_setup(self) -> bool:
        """True while the loss still has to see one batch to create its parameters."""
        return any(is_lazy(p) for p in self.parameters())
