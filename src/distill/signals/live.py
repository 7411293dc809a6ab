"""The live teacher as a signal source: one forward pass per batch, without autograd."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from distill.errors import DistillError
from distill.signals.base import TeacherSignal


def _entry(mapping: Mapping, key: str, what: str) -> object:
    if key not in mapping:
        raise DistillError(f"the live teacher signal reads {what} {key!r}, which is not there; it has "
                           f"{', '.join(map(repr, mapping))}.")
    return mapping[key]


class LiveSignal(TeacherSignal):
    """Targets from ``teacher`` run on the batch (frozen, in eval mode, no autograd).

    ``inputs`` names what the teacher is called with: one batch key, passed as its one
    positional argument (``"x"``), or a mapping ``{batch key: keyword}`` (``{"input_ids":
    "input_ids"}`` for a Hugging Face model). ``output`` picks one entry of a dict-like
    output (``"logits"`` of a ``ModelOutput``); None returns the output itself.
    """

    def __init__(self, teacher: nn.Module, inputs: str | Mapping[str, str] = "x", output: str | None = None) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.inputs, self.output = inputs, output

    @torch.no_grad()
    def for_batch(self, batch: Mapping[str, Tensor]) -> Tensor:
        if isinstance(self.inputs, str):
            out = self.teacher(_entry(batch, self.inputs, "batch key"))
        else:
            out = self.teacher(**{keyword: _entry(batch, key, "batch key") for key, keyword in self.inputs.items()})
        return out if self.output is None else _entry(out, self.output, "output entry")
