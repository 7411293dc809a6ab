"""TAID: distillation towards a target that moves from the student to the teacher."""

from __future__ import annotations

import math

import torch

from distill.errors import ConfigError, DistillError, check_fraction
from distill.losses.base import LOSSES
from distill.losses.token import TokenDistillLoss, kl_divergence

#: Added to the previous loss in TAID's relative improvement, as in the official code.
_TAID_EPS = 1e-15


@LOSSES.register("taid")
class TAIDLoss(TokenDistillLoss):
    """TAID (Shing et al., 2025, "TAID: Temporally Adaptive Interpolated Distillation").

    ``KL(p_t ‖ q)`` per position, against the intermediate target
    ``p_t = softmax((1 − t)·log q.detach() + t·log p)``, which moves from the student
    (t = 0, loss 0) to the teacher (t = 1, forward KL) as training goes on. The official
    code interpolates raw logits, which gives the same ``p_t`` (log-softmax only shifts
    each row) at temperature 1; here the logits are divided by ``temperature`` first.

    ``t`` starts at ``t_start`` and moves by :meth:`update`, called once per optimizer
    step with the loss value and the fraction of training done. The rule is the official
    one: ``δ = (J_prev − J) / (J_prev + 1e-15)``, ``m ← β·m + (1 − β)·δ`` (β = ``momentum``),
    ``t ← min(t_end, max(t_start + (t_end − t_start)·progress, t + α·sigmoid(m)·(1 − t)))``
    (α = ``step_size``); the first call only records ``J_prev``. ``adaptive=False`` uses
    the linear schedule alone. ``t``, ``J_prev`` and ``m`` are buffers, so they checkpoint.
    Differences from the official code: it calls the rule on every forward pass with its
    loss in cross-entropy form ``−Σ p_t log q`` (this KL plus the entropy of ``p_t``); here
    the caller passes the value, once per optimizer step.

    On :class:`~distill.losses.sparse.TopKTargets` the interpolation is of the k + 1 bins, which equals
    binning the per-token interpolation only when the tail bin is a single token; the language family
    therefore refuses TAID on its top-k cache and runs it on the live teacher's full distribution.
    """

    def __init__(
        self,
        t_start: float = 0.4,
        t_end: float = 1.0,
        step_size: float = 5e-4,
        momentum: float = 0.99,
        adaptive: bool = True,
        temperature: float = 1.0,
        ce_weight: float = 0.0,
    ) -> None:
        super().__init__(temperature, ce_weight)
        self.t_end = check_fraction("t_end", t_end, "the final interpolation weight of the teacher")
        self.t_start = check_fraction("t_start", t_start, "the initial interpolation weight of the teacher")
        if self.t_start > self.t_end:
            raise ConfigError(f"t_start ({t_start}) must not exceed t_end ({t_end}); t only grows from t_start to t_end.")
        self.step_size = check_fraction("step_size", step_size, "the largest adaptive step of t, times (1 − t)")
        self.momentum = check_fraction("momentum", momentum, "the momentum of the relative loss improvement",
                                      open_right=True)
        self.adaptive = bool(adaptive)
        self.register_buffer("t", torch.tensor(self.t_start, dtype=torch.float32))
        self.register_buffer("prev_loss", torch.tensor(float("inf"), dtype=torch.float32))
        self.register_buffer("smoothed_improvement", torch.zeros((), dtype=torch.float32))

    def divergence(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        t = self.t.to(log_p.device)
        # weights of exactly 0 must drop their side even where it is -inf (0 · -inf would be NaN)
        student_side = torch.where(t < 1, (1 - t) * log_q.detach(), 0.0)
        teacher_side = torch.where(t > 0, t * log_p, 0.0)
        log_target = torch.log_softmax(student_side + teacher_side, dim=-1)
        return kl_divergence(log_target, log_q)

    @torch.no_grad()
    def update(self, loss_value: float, progress: float) -> None:
        """Advance ``t`` after an optimizer step: ``loss_value`` is this loss's value, ``progress`` in [0, 1]."""
        value, progress = float(loss_value), float(progress)
        if not math.isfinite(value):
            raise DistillError(f"TAIDLoss.update: the loss value must be finite, got {value}.")
        if not 0.0 <= progress <= 1.0:
            raise DistillError(f"TAIDLoss.update: progress is the fraction of training done, in [0, 1], got {progress}.")
        first = torch.isinf(self.prev_loss)  # nothing to compare with yet: only record the value
        floor = self.t_start + (self.t_end - self.t_start) * progress
        if self.adaptive:
            relative = (self.prev_loss - value) / (self.prev_loss + _TAID_EPS)
            improvement = self.momentum * self.smoothed_improvement + (1.0 - self.momentum) * relative
            step = self.step_size * torch.sigmoid(improvement) * (1.0 - self.t)
            t = (self.t + step).clamp(min=floor, max=self.t_end)
            self.smoothed_improvement.copy_(torch.where(first, self.smoothed_improvement, improvement))
        else:
            t = torch.full_like(self.t, min(floor, self.t_end))
        self.t.copy_(torch.where(first, self.t, t))
        self.prev_loss.fill_(value)
