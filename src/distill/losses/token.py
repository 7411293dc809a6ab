"""Token-level distillation losses for language models: divergences between next-token distributions.

Every loss here compares, position by position, the student's next-token distribution
``q`` with the teacher's ``p`` and averages over the positions a bool ``mask`` keeps
(all of them without one). The teacher is either dense logits of the student's shape
``(..., V)`` — both sides become ``log_softmax(x / T)`` over the vocabulary — or
:class:`~distill.losses.sparse.TopKTargets`, compared on their ``k + 1`` bins (see
:mod:`distill.losses.sparse`). Each loss is one divergence on the pair of float32
log-probabilities ``(log q, log p)``; probabilities that are 0 (log-prob ``-inf``)
contribute 0 instead of NaN. There is no T² scaling: LM distillation (GKD, DistiLLM,
TAID) uses none, and the default temperature is 1. ``ce_weight > 0`` adds
``ce_weight · CE(student, target)`` on the labelled, unmasked positions.
"""

from __future__ import annotations

from typing import ClassVar

import math

import torch
import torch.nn.functional as F

from distill.errors import ConfigError, DistillError
from distill.losses.base import IGNORE_INDEX, LOSSES, DistillLoss
from distill.losses.functional import (
    check_fraction,
    check_mask,
    check_pair,
    check_positive,
    check_target,
    masked_cross_entropy,
    masked_mean,
)
from distill.losses.sparse import TopKTargets, binned_log_probs

#: Added to the previous loss in TAID's relative improvement, as in the official code.
_TAID_EPS = 1e-15


def token_log_probs(loss: str, student_logits: torch.Tensor, teacher: torch.Tensor | TopKTargets,
                    temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log_q, log_p)``: float32 log-probabilities of student and teacher over the last dim.

    Dense teacher logits give ``log_softmax(x / T)`` of both over the vocabulary;
    :class:`TopKTargets` give both distributions on the targets' ``k + 1`` bins.
    """
    if isinstance(teacher, TopKTargets):
        if student_logits.dim() < 2:
            raise DistillError(f"{loss}: expected student logits (..., V), got {tuple(student_logits.shape)}.")
        return binned_log_probs(student_logits, teacher, temperature)
    if not isinstance(teacher, torch.Tensor):
        raise DistillError(f"{loss}: the teacher must be logits of the student's shape or TopKTargets, "
                           f"got {type(teacher).__name__}.")
    check_pair(loss, student_logits, teacher, "identical", min_dim=2)
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p = F.log_softmax(teacher.float() / temperature, dim=-1)
    return log_q, log_p


def kl_divergence(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """``KL(a ‖ b) = Σ a (log a − log b)`` over the last dim, from log-probabilities.

    Entries with ``a = 0`` contribute 0 (value and gradient), so ``-inf`` log-probs never
    give NaN; ``a > 0`` where ``b = 0`` gives the true value, ``+inf``.
    """
    a = log_a.exp()
    return (a * torch.where(a > 0, log_a - log_b, 0.0)).sum(dim=-1)


def log_mixture(log_a: torch.Tensor, log_b: torch.Tensor, weight: float) -> torch.Tensor:
    """``log(weight · a + (1 − weight) · b)`` elementwise, by logsumexp; exact at weight 0 and 1.

    Where both are 0 the mixture is 0 (``-inf``) with a zero, not NaN, gradient.
    """
    if weight == 0.0:
        return log_b
    if weight == 1.0:
        return log_a
    neither = torch.isneginf(log_a) & torch.isneginf(log_b)
    mixed = torch.logaddexp(log_a.masked_fill(neither, 0.0) + math.log(weight),
                            log_b.masked_fill(neither, 0.0) + math.log1p(-weight))
    return mixed.masked_fill(neither, float("-inf"))


class TokenDistillLoss(DistillLoss):
    """Shared part of the token-level losses: inputs → ``(log q, log p)`` → per-position divergence → masked mean.

    Subclasses implement :meth:`divergence`. ``temperature`` scales both sides' logits
    (a TopKTargets teacher must have been written at it); ``ce_weight`` weighs the
    student's cross-entropy on ``target`` (0: off).
    """

    requires = "identical"
    supports_mask = True

    def __init__(self, temperature: float = 1.0, ce_weight: float = 0.0) -> None:
        super().__init__()
        self.temperature = check_positive("temperature", temperature)
        if not ce_weight >= 0:
            raise ConfigError(f"ce_weight must be >= 0 (the weight of the cross-entropy on labels), got {ce_weight}.")
        self.ce_weight = float(ce_weight)

    def divergence(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Per-position divergence between student ``q`` and teacher ``p`` (log-probs over the last dim)."""
        raise NotImplementedError

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher: torch.Tensor | TopKTargets,
        target: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        name = type(self).__name__
        if mask is not None:
            check_mask(name, student_logits, mask)
        log_q, log_p = token_log_probs(name, student_logits, teacher, self.temperature)
        values = self.divergence(log_q, log_p)
        if mask is None:
            loss = values.sum() / max(values.numel(), 1)
        else:
            loss = masked_mean(values, mask)
        if target is not None and self.ce_weight:
            if mask is not None:
                check_target(name, student_logits, target)
                target = target.masked_fill(~mask, IGNORE_INDEX)
            loss = loss + self.ce_weight * masked_cross_entropy(student_logits, target)
        return loss


@LOSSES.register("forward_kl")
class ForwardKLLoss(TokenDistillLoss):
    """Token-level forward KL, word-level KD (Kim & Rush, 2016, "Sequence-Level Knowledge Distillation").

    ``KL(p ‖ q) = Σ p (log p − log q)`` per position, teacher ``p``, student ``q``: mass-covering.
    """

    def divergence(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        return kl_divergence(log_p, log_q)


@LOSSES.register("reverse_kl")
class ReverseKLLoss(TokenDistillLoss):
    """Token-level reverse KL (Gu et al., 2024, "MiniLLM: Knowledge Distillation of Large Language Models").

    ``KL(q ‖ p) = Σ q (log q − log p)`` per position: mode-seeking. MiniLLM optimises the
    sequence-level reverse KL by policy gradient; this is its per-token form. It is
    ``+inf`` where the student puts mass on a token the teacher gives probability 0.
    """

    def divergence(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        return kl_divergence(log_q, log_p)


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

    def divergence(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        if self.beta == 0.0:
            return kl_divergence(log_p, log_q)
        if self.beta == 1.0:
            return kl_divergence(log_q, log_p)
        log_m = log_mixture(log_p, log_q, self.beta)
        return self.beta * kl_divergence(log_p, log_m) + (1.0 - self.beta) * kl_divergence(log_q, log_m)


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


@LOSSES.register("skew_reverse_kl")
class SkewReverseKLLoss(SkewKLLoss):
    """Skew reverse KL of DistiLLM (Ko et al., 2024, "DistiLLM: Towards Streamlined Distillation for Large Language Models").

    ``SRKL_α = KL(q ‖ (1 − α)·p + α·q)`` per position, ``alpha`` in [0, 1) (0: reverse KL):
    the student is mixed into the teacher, as in the paper and its code
    (``skewed_reverse_kl``: ``mixed = (1 − λ)·p_teacher + λ·q_student``).
    """

    reverse = True


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
