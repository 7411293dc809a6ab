"""The shared part of the token-level losses for language models (``forward_kl``, ``reverse_kl``, ``jsd``,
``skew_kl``, ``skew_reverse_kl``, ``taid``, one module each): divergences between next-token distributions.

Every token loss compares, position by position, the student's next-token distribution
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

import math

import torch
import torch.nn.functional as F

from distill.errors import ConfigError, DistillError, check_positive
from distill.losses import closed_form
from distill.losses.base import IGNORE_INDEX, DistillLoss
from distill.losses.functional import check_mask, check_pair, check_target, cross_entropy_sum
from distill.losses.sparse import TopKTargets, labelled_bins, scaled_logits


def token_log_probs(loss: str, student_logits: torch.Tensor, teacher: torch.Tensor | TopKTargets, temperature: float,
                    labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(log_q, log_p, log_q_labels)``: float32 log-probabilities of student and teacher over the last dim, and
    the student's at ``labels`` (any value at IGNORE_INDEX; None without labels).

    Dense teacher logits give ``log_softmax(x / T)`` of both over the vocabulary;
    :class:`TopKTargets` give both distributions on the targets' ``k + 1`` bins.
    """
    if isinstance(teacher, TopKTargets):
        if student_logits.dim() < 2:
            raise DistillError(f"{loss}: expected student logits (..., V), got {tuple(student_logits.shape)}.")
        return labelled_bins(student_logits, teacher, temperature, labels)
    if not isinstance(teacher, torch.Tensor):
        raise DistillError(f"{loss}: the teacher must be logits of the student's shape or TopKTargets, "
                           f"got {type(teacher).__name__}.")
    check_pair(loss, student_logits, teacher, "identical", min_dim=2)
    log_q = F.log_softmax(scaled_logits(student_logits, temperature), dim=-1)
    log_p = F.log_softmax(scaled_logits(teacher, temperature), dim=-1)
    at_labels = None if labels is None else log_q.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return log_q, log_p, at_labels


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
    #: β of the divergence if it is generalised JSD's (0: forward KL, 1: reverse KL): then dense teacher logits take
    #: the closed-form gradient of :mod:`distill.losses.closed_form`; None: autograd through :meth:`divergence`
    jsd_beta: float | None = None

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "divergence" in vars(cls) and "jsd_beta" not in vars(cls):
            cls.jsd_beta = None  # a divergence of its own: its parent's closed form no longer holds

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
        labelled = None
        if target is not None and self.ce_weight:
            check_target(name, student_logits, target)
            if mask is not None:
                target = target.masked_fill(~mask, IGNORE_INDEX)
            labelled = (target != IGNORE_INDEX).sum()
        positions = student_logits.shape[:-1].numel() if mask is None else mask.sum()
        return self.share(student_logits, teacher, target, mask=mask, positions=positions, labelled=labelled)

    def share(self, student_logits: torch.Tensor, teacher: torch.Tensor | TopKTargets, target: torch.Tensor | None,
              *, mask: torch.Tensor | None, positions: torch.Tensor | int,
              labelled: torch.Tensor | int | None) -> torch.Tensor:
        """These positions' share of the loss of a batch that keeps ``positions`` positions, ``labelled`` of them
        labelled (None: no cross-entropy term): their summed divergences over ``positions`` plus ``ce_weight`` ×
        their summed cross-entropies over ``labelled``. Over a whole batch it is the loss; the shares of a
        batch's chunks of positions add up to it (the language family's chunked LM head). ``target`` must
        already be IGNORE_INDEX outside ``mask``. At temperature 1 the cross-entropy reads the student's
        log-probabilities of the divergence, with no second log-softmax over the vocabulary.
        """
        if self.jsd_beta is not None and closed_form.applies(student_logits, teacher, self.temperature,
                                                             labelled is not None):
            vocabulary = student_logits.shape[-1]
            weight = torch.ones(student_logits.shape[:-1], dtype=torch.bool, device=student_logits.device) \
                if mask is None else mask
            return closed_form.DenseDivergence.apply(
                student_logits.reshape(-1, vocabulary), teacher.reshape(-1, vocabulary), weight.reshape(-1),
                None if labelled is None else target.reshape(-1), self.jsd_beta, self.temperature,
                torch.as_tensor(positions, device=student_logits.device), self.ce_weight,
                torch.as_tensor(0 if labelled is None else labelled, device=student_logits.device))
        shared = labelled is not None and self.temperature == 1.0
        log_q, log_p, at_labels = token_log_probs(type(self).__name__, student_logits, teacher, self.temperature,
                                                  target if shared else None)
        values = self.divergence(log_q, log_p)
        if mask is not None:
            values = torch.where(mask, values, 0.0)  # a masked position never reaches the sum, even if not finite
        loss = values.sum() / torch.as_tensor(positions).clamp(min=1)
        if labelled is not None:
            summed = -torch.where(target != IGNORE_INDEX, at_labels, 0.0).sum() if shared else \
                cross_entropy_sum(student_logits, target)
            loss = loss + self.ce_weight * summed / torch.as_tensor(labelled).clamp(min=1)
        return loss
