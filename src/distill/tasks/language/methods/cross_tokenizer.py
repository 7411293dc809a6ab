"""Training a student with its own tokenizer from a teacher with another (ULD, MinED).

Each batch holds the student's blocks of its own tokens, the teacher's tokens of the same text
(:class:`~distill.tasks.language.methods.alignment.TeacherViews`) and, per student position, the
teacher position that has read the same text. The student is trained on its own next-token labels
(cross-entropy, ``ce_weight``) and, at every aligned position, towards the live teacher's prediction
by a cross-vocabulary loss (:class:`~distill.losses.cross_vocabulary.CrossVocabularyLoss`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distill.losses import CrossVocabularyLoss, masked_cross_entropy
from distill.tasks.language.objectives import next_token_labels, prediction_mask


class CrossTokenizerObjective(nn.Module):
    """``forward(batch) -> {"loss", "distill", "aligned"}`` for ``distill.engine.train`` on
    ``{"input_ids", "teacher_ids", "aligned"}``: ``ce_weight`` · the student's cross-entropy on its own labels
    plus ``loss`` on the aligned positions (``aligned``: their share of the student's predictions)."""

    def __init__(self, student: nn.Module, loss: CrossVocabularyLoss, teacher: nn.Module, ce_weight: float = 1.0) -> None:
        super().__init__()
        self.model = student
        self.loss = loss
        self.teacher = teacher  # frozen; the engine leaves ``teacher.*`` out of checkpoints
        self.ce_weight = ce_weight

    def train(self, mode: bool = True) -> CrossTokenizerObjective:
        """Set the student to ``mode``; the frozen teacher stays in eval mode (no dropout in its targets)."""
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        ids, aligned = batch["input_ids"], batch["aligned"]
        mask = prediction_mask(ids)
        logits = self.model(input_ids=ids).logits
        rows, positions = (mask & (aligned >= 0)).nonzero(as_tuple=True)
        with torch.no_grad():  # padded after the text: a causal teacher's positions before it do not see it
            teacher_logits = self.teacher(input_ids=batch["teacher_ids"]).logits
        term = self.loss(logits[rows, positions], teacher_logits[rows, aligned[rows, positions]])
        value = term
        if self.ce_weight:
            value = value + self.ce_weight * masked_cross_entropy(logits, next_token_labels(ids, mask))
        return {"loss": value, "distill": term.detach(), "aligned": torch.tensor(len(rows) / max(1, int(mask.sum())))}
