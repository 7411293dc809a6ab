"""Two views of the same samples: the teacher sees every sensor channel, the student a subset.

For cross-sensor distillation (e.g. a new headset with fewer electrodes): the
student's view is its channel subset, optionally Euclidean-aligned on its own
(He & Wu, IEEE TBME 2020), and the paired training set serves both views as one
``{"x", "teacher_x", "y"}`` batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from distill.data.alignment import euclidean_alignment
from distill.data.base import DataSplits
from distill.data.tensors import InMemoryDataset, TensorDictDataset
from distill.errors import DistillError


@dataclasses.dataclass
class PairedViews:
    """The student's own splits, and a training set of ``{"x": student view, "teacher_x": all channels, "y"}``."""

    student: DataSplits
    paired_train: TensorDictDataset


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
    paired = TensorDictDataset(x=train_view, teacher_x=splits.train.x, y=splits.train.y)
    return PairedViews(student=student, paired_train=paired)
