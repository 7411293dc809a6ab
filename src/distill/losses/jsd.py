"""GKD's generalised Jensen–Shannon divergence between next-token distributions."""

from __future__ import annotations

import torch

from distill.errors import check_fraction
from distill.losses.base import LOSSES
from distill.losses.token import TokenDistillLoss, kl_divergence, log_mixture


@LOSSES.register("jsd")
class GeneralizedJSDLoss(TokenDistillLoss):
    """Generalised JSD of GKD (Agarwal et al., 2024, "On-Policy Distillation of Language Models: Learning from Self-Generated Mistakes").

    With ``M = β·p + (1 − β)·q``: ``JSD(β) = β·KL(p ‖ M) + (1 − β)·KL(q ‖ M)`` per position
    (``beta`` in [0, 1] weighs the teacher side, as in TRL's ``generalized_jsd_loss``).
    The formula vanishes at both ends, so β = 0 is forward KL ``KL(p ‖ q)`` and β = 1 is
    reverse KL ``KL(q ‖ p)`` exactly, as TRL special-cases them.
    """

    def __init__(self, beta: float = 0.5, temperature: float = 1.0, ce_weight: float = 0.0) -> None:
        super().__init__(temperature, ce_weight)
        self.beta = check_fraction("beta", beta, "the teacher's weight in the mixture; 0: forward KL, 1: reverse KL")

    @property
    def jsd_beta(self) -> float:
        return self.beta

    def divergence(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        if self.beta == 0.0:
            return kl_divergence(log_p, log_q)
        if self.beta == 1.0:
            return kl_divergence(log_q, log_p)
        log_m = log_mixture(log_p, log_q, self.beta)
        return self.beta * kl_divergence(log_p, log_m) + (1.0 - self.beta) * kl_divergence(log_q, log_m)
