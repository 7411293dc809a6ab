"""Reverse KL between next-token distributions: MiniLLM's per-token objective."""

from __future__ import annotations

import torch

from distill.losses.base import LOSSES
from distill.losses.token import TokenDistillLoss, kl_divergence


@LOSSES.register("reverse_kl")
class ReverseKLLoss(TokenDistillLoss):
    """Token-level reverse KL (Gu et al., 2024, "MiniLLM: Knowledge Distillation of Large Language Models").

    ``KL(q ‖ p) = Σ q (log q − log p)`` per position: mode-seeking. MiniLLM optimises the
    sequence-level reverse KL by policy gradient; this is its per-token form. It is
    ``+inf`` where the student puts mass on a token the teacher gives probability 0.
    """

    jsd_beta = 1.0

    def divergence(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        return kl_divergence(log_q, log_p)
