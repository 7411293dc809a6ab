"""DistiLLM's skew KL between next-token distributions."""

from __future__ import annotations

from typing import ClassVar

import torch

from distill.errors import check_fraction
from distill.losses.base import LOSSES
from distill.losses.token import TokenDistillLoss, kl_divergence, log_mixture


@LOSSES.register("skew_kl")
class SkewKLLoss(TokenDistillLoss):
    """Skew KL of DistiLLM (Ko et al., 2024, "DistiLLM: Towards Streamlined Distillation for Large Language Models").

    ``SKL_α = KL(p ‖ α·p + (1 − α)·q)`` per position, ``alpha`` in [0, 1) (0: forward KL).
    Mixing the teacher into the student keeps the divergence finite and its gradient
    bounded. DistiLLM's code returns the cross-entropy ``−Σ p log(α·p + (1 − α)·q)``,
    which is this plus the teacher's entropy (same gradient); here it is 0 when q = p.
    """

    #: skew reverse KL swaps the roles: the student is mixed into the teacher
    reverse: ClassVar[bool] = False

    def __init__(self, alpha: float = 0.1, temperature: float = 1.0, ce_weight: float = 0.0) -> None:
        super().__init__(temperature, ce_weight)
        mixed, other = ("student", "teacher") if self.reverse else ("teacher", "student")
        self.alpha = check_fraction("alpha", alpha, f"the {mixed}'s share of the skewed {other}; 1 would compare "
                                   f"the {mixed} with itself", open_right=True)

    def divergence(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        first, second = (log_q, log_p) if self.reverse else (log_p, log_q)
        return kl_divergence(first, log_mixture(first, second, self.alpha))
