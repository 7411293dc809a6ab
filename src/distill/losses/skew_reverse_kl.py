"""DistiLLM's skew reverse KL: the student mixed into the teacher."""

from __future__ import annotations

from distill.losses.base import LOSSES
from distill.losses.skew_kl import SkewKLLoss


@LOSSES.register("skew_reverse_kl")
class SkewReverseKLLoss(SkewKLLoss):
    """Skew reverse KL of DistiLLM (Ko et al., 2024, "DistiLLM: Towards Streamlined Distillation for Large Language Models").

    ``SRKL_α = KL(q ‖ (1 − α)·p + α·q)`` per position, ``alpha`` in [0, 1) (0: reverse KL):
    the student is mixed into the teacher, as in the paper and its code
    (``skewed_reverse_kl``: ``mixed = (1 − λ)·p_teacher + λ·q_student``).
    """

    reverse = True
