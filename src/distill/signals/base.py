"""One interface for where a teacher's targets come from, as DistillKit's signal sources (arcee-ai/DistillKit,
``distillkit/signals/``): the live teacher and an offline cache answer the same call, so a family's objective
does not care which it was given."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

from torch import Tensor

from distill.losses.sparse import TopKTargets


class TeacherSignal(ABC):
    """The teacher's targets for a batch of named tensors (the batches the engine trains on).

    A source returns dense targets (logits, or any tapped output) or :class:`TopKTargets`
    (the teacher's top-k log-probabilities plus its tail mass); the token losses take both.
    A cache refuses a batch it was not built for instead of answering with stale targets.
    """

    @abstractmethod
    def for_batch(self, batch: Mapping[str, Tensor]) -> Tensor | TopKTargets:
        """The teacher's targets for ``batch``, on the batch's device."""
