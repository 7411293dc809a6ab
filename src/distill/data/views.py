"""Two views of the same samples: the teacher sees every sensor channel, the student a subset.

For cross-sensor distillation (e.g. a new headset with fewer electrodes): the
student's view is its channel subset, optionally Euclidean-aligned on its own
(He & Wu, IEEE TBME 2020), and the paired training set stacks both views along the
channel axis so the ordinary engine carries them as one tensor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from distill.data.alignment import euclidean_alignment
from distill.data.base import DataSplits
from distill.data.tensors import InMemoryDataset
from distill.errors import DistillError


@dataclasses.dataclass
class PairedViews:
    """The student's own splits, and a training set whose first ``student_width`` channels are its view."""

    student: DataSplits
    paired_train: InMemoryDataset
    student_width: int


def _subset(x: torch.Tensor, channels: Sequence[int], align: bool) -> torch.Tensor:
    view = x[:, list(channels)]
    return euclidean_alignment(view) if align else view


def student_views(splits: DataSplits, channels: Sequence[int], align: bool = False) -> PairedViews:
    """The student's channel subset of ``splits`` (in-memory data of shape (N, C, T))."""
    if not all(isinstance(d, InMemoryDataset) for d in (splits.train, splits.test)) or len(splits.input_shape) != 2:
        raise DistillError("student_channels needs in-memory multichannel data of shape (C, T), e.g. 'basicmotions'.")
    width = splits.input_shape[0]
    if not channels or len(set(channels)) != len(channels) or not all(0 <= c < width for c in channels):
        raise DistillError(f"student_channels must be distinct indices in 0..{width - 1}, got {list(channels)}.")
    train_view = _subset(splits.train.x, channels, align)
    student = dataclasses.replace(
        splits,
        train=InMemoryDataset(train_view, splits.train.y),
        test=InMemoryDataset(_subset(splits.test.x, channels, align), splits.test.y),
        input_shape=(len(channels), *splits.input_shape[1:]),
        transfer=None,
        name=f"{splits.name} (student channels {list(channels)})",
    )
    paired = InMemoryDataset(torch.cat([train_view, splits.train.x], dim=1), splits.train.y)
    return PairedViews(student=student, paired_train=paired, student_width=len(channels))
