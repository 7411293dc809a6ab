"""Forward KL to a teacher distribution carried onto the student's vocabulary by a token map (FuseLLM's MinED)."""

from __future__ import annotations

import torch

from distill.errors import DistillError
from distill.losses.base import LOSSES
from distill.losses.cross_vocabulary import CrossVocabularyLoss
from distill.losses.token import kl_divergence


@LOSSES.register("mined")
class MinEDLoss(CrossVocabularyLoss):
    """Token-alignment distillation as FuseLLM (Wan et al., ICLR 2024, "Knowledge Fusion of Large Language
    Models"): every teacher token is mapped to the student token of minimum edit distance (MinED,
    ``vocabulary_map[teacher id] = student id``, :func:`distill.tasks.language.methods.alignment.min_edit_distance_map`),
    the teacher's probabilities are summed onto the student ids they map to, and the student is trained
    towards that distribution by forward KL ``KL(p_mapped ‖ q)`` per aligned pair (FuseLLM's cross-entropy to
    the fused distribution, less its constant entropy). ``vocabulary_map`` is set before the first call.
    """

    def __init__(self, temperature: float = 1.0, vocabulary_map: torch.Tensor | None = None) -> None:
        super().__init__(temperature)
        self.register_buffer("vocabulary_map", vocabulary_map, persistent=False)

    def divergence(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        mapping = self.vocabulary_map
        if mapping is None or mapping.shape != teacher_logits.shape[-1:]:
            raise DistillError(f"MinEDLoss: vocabulary_map must map each of the teacher's {teacher_logits.shape[-1]} "
                               f"token ids to a student id, got {None if mapping is None else tuple(mapping.shape)}.")
        if int(mapping.min()) < 0 or int(mapping.max()) >= student_logits.shape[-1]:
            raise DistillError(f"MinEDLoss: vocabulary_map holds ids outside the student's vocabulary of "
                               f"{student_logits.shape[-1]}.")
        p = torch.softmax(teacher_logits.float() / self.temperature, dim=-1)
        mapped = p.new_zeros(*p.shape[:-1], student_logits.shape[-1]).index_add_(-1, mapping, p)
        log_q = torch.log_softmax(student_logits.float() / self.temperature, dim=-1)
        return kl_divergence(mapped.log(), log_q)
