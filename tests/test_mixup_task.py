"""Function matching with the labels kept: under mixup the task term is mixup's two-label cross-entropy."""

from __future__ import annotations

import torch
from torch import nn

from distill import Distiller
from distill.augment import Mixup
from distill.distiller import Match
from distill.losses import masked_cross_entropy
from distill.supervised import mixup_cross_entropy
from distill.tasks.classification.objectives import DistillObjective


def _pair():
    torch.manual_seed(0)
    return nn.Linear(6, 3), nn.Linear(6, 3)


def test_mixup_task_term_is_the_two_label_cross_entropy_weighted_by_lam():
    student, teacher = _pair()
    batch = {"x": torch.randn(8, 6), "y": torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])}
    kd_only = DistillObjective(Distiller(student, teacher, {("output", "output"): Match("kd")}), Mixup(1.0))
    with_labels = DistillObjective(Distiller(student, teacher, {("output", "output"): Match("kd")}), Mixup(1.0),
                                   task_weight=0.5)
    torch.manual_seed(1)
    soft = kd_only(batch)["loss"]
    torch.manual_seed(1)
    values = with_labels(batch)
    torch.manual_seed(1)
    mixed = Mixup(1.0)(batch["x"])
    expected_task = mixup_cross_entropy(student(mixed.x), batch["y"], mixed)
    assert torch.allclose(values["task"], expected_task)
    assert torch.allclose(values["loss"], soft + 0.5 * expected_task)
    assert not torch.allclose(expected_task, masked_cross_entropy(student(mixed.x), batch["y"]))


def test_without_augmentation_the_task_term_is_plain_cross_entropy():
    student, teacher = _pair()
    batch = {"x": torch.randn(8, 6), "y": torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])}
    values = DistillObjective(Distiller(student, teacher, {("output", "output"): Match("kd")}), task_weight=2.0)(batch)
    assert torch.allclose(values["task"], masked_cross_entropy(student(batch["x"]), batch["y"]))
