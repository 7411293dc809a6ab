"""Forward KL between next-token distributions: word-level KD."""

from __future__ import annotations

import torch

from distill.losses.base import LOSSES
from distill.losses.token import TokenDistillLoss, kl_divergence


@LOSSES.register("forward_kl")
class ForwardKLLoss(TokenDistillLoss):
    """Token-level forward KL, word-level KD (Kim & Rush, 2016, "Sequence-Level Knowledge Distillation").

    ``KL(p ‖ q) = Σ p (log p − log q)`` per position, teacher ``p``, student ``q``: mass-covering.
    """

    jsd_beta = 0.0

    def divergence(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        return kl_divergence(log_p, log_q)
