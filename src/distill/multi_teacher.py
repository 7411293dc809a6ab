"""Several teachers behaving as one: their logits combined, their features still tappable.

``MultiTeacher`` is an ordinary ``nn.Module``, so it drops into :class:`Distiller`
unchanged: tap ``"output"`` for the combined prediction, or ``"teachers.1.layer3"``
for one teacher's features. Multi-teacher KD as in Hinton et al. (2015, ensembles
as teachers) and You et al. (KDD 2017, "Learning from Multiple Teacher Networks").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from distill.errors import DistillError


class MultiTeacher(nn.Module):
    """Weighted combination of teachers' logits (``combine="logits"``) or probabilities (``"probs"``).

    ``"probs"`` returns ``log(Σ wᵢ softmax(zᵢ))``, the log of the ensemble's predictive
    distribution, so softmax-based losses see the averaged probabilities.
    """

    def __init__(
        self, teachers: Sequence[nn.Module], weights: Sequence[float] | None = None,
        combine: Literal["logits", "probs"] = "logits",
    ) -> None:
        super().__init__()
        if not teachers or not all(isinstance(t, nn.Module) for t in teachers):
            raise DistillError("MultiTeacher needs a non-empty list of nn.Module teachers.")
        weights = list(weights) if weights is not None else [1.0] * len(teachers)
        if len(weights) != len(teachers) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise DistillError(f"MultiTeacher weights must be {len(teachers)} non-negative numbers with a positive sum, got {weights}.")
        if combine not in ("logits", "probs"):
            raise DistillError(f"combine must be 'logits' or 'probs', got {combine!r}.")
        self.teachers = nn.ModuleList(teachers)
        total = sum(weights)
        self.register_buffer("weights", torch.tensor([w / total for w in weights]))
        self.combine = combine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [teacher(x) for teacher in self.teachers]
        shapes = {tuple(o.shape) for o in outputs}
        if len(shapes) > 1:
            raise DistillError(f"the teachers' outputs differ in shape {sorted(shapes)}; they must predict the same classes.")
        stacked = torch.stack(outputs)
        weights = self.weights.view(-1, *([1] * (stacked.dim() - 1))).to(stacked.dtype)
        if self.combine == "logits":
            return (weights * stacked).sum(0)
        return torch.logsumexp(torch.log_softmax(stacked, dim=-1) + weights.log(), dim=0)
