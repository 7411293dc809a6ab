"""The shared part of the cross-tokenizer losses (``uld``, ``mined``, one module each): a teacher and a
student whose vocabularies differ, compared on aligned pairs of next-token predictions.

Row ``n`` of ``student_logits (N, Vs)`` and of ``teacher_logits (N, Vt)`` is one aligned pair: two
predictions that condition on the same text (the language family pairs the positions of two
tokenizations of one text by their character offsets, :mod:`distill.tasks.language.methods.alignment`).
The loss is the mean over the rows (those a bool ``mask`` keeps) of a per-row divergence. The
cross-entropy on the student's own labels, which both papers add, covers every position of the
student's text, not only the aligned ones, so the language objective adds it (``method.ce_weight``).
"""

from __future__ import annotations

import torch

from distill.errors import DistillError, check_positive
from distill.losses.base import DistillLoss
from distill.losses.functional import check_mask, masked_mean


class CrossVocabularyLoss(DistillLoss):
    """Inputs → per-row divergence (:meth:`divergence`) → masked mean; ``temperature`` scales both sides' logits."""

    requires = "same_batch"
    supports_mask = True

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)

    def divergence(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Per-row divergence between the student's and the teacher's next-token distributions."""
        raise NotImplementedError

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor | None = None,
                *, mask: torch.Tensor | None = None) -> torch.Tensor:
        name = type(self).__name__
        if student_logits.dim() < 2 or student_logits.shape[:-1] != teacher_logits.shape[:-1]:
            raise DistillError(f"{name}: student {tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)} "
                               "logits must hold the same aligned positions (..., V); only the vocabularies may differ.")
        values = self.divergence(student_logits, teacher_logits)
        if mask is None:
            return values.sum() / max(values.numel(), 1)
        check_mask(name, student_logits, mask)
        return masked_mean(values, mask)
