"""The engine's 'step' schedule (one cut of the rate, in whole epochs) and drop_last=False (a smaller last batch)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distill.data import TensorDictDataset
from distill.engine.config import TrainConfig
from distill.engine.trainer import schedule_factor, train


def test_step_schedule_cuts_once_after_whole_epochs():
    config = TrainConfig(epochs=7, schedule="step", decay=0.1)
    assert [schedule_factor(config, step, 14, per_epoch=2) for step in range(14)] == [1.0] * 6 + [0.1] * 8
    by_steps = TrainConfig(steps=10, schedule="step", decay_at=0.3, decay=0.5)
    assert [schedule_factor(by_steps, step, 10) for step in range(10)] == [1.0] * 3 + [0.5] * 7


class Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model, self.sizes = nn.Linear(2, 2), []

    def forward(self, batch):
        self.sizes.append(len(batch["y"]))
        return {"loss": nn.functional.cross_entropy(self.model(batch["x"]), batch["y"])}


def test_drop_last_false_trains_on_the_smaller_last_batch_too(tmp_path):
    data = TensorDictDataset(x=torch.randn(10, 2), y=torch.arange(10) % 2)
    objective = Counting()
    result = train(objective, data, TrainConfig(epochs=2, batch_size=4, drop_last=False, progress=False,
                                                schedule="step", optimizer="sgd", lr=0.1), tmp_path)
    assert objective.sizes == [4, 4, 2] * 2 and result.steps == 6
    assert result.history[-1]["lr"] == pytest.approx(0.01)
    # a set smaller than one batch is one (short) batch an epoch, instead of an error
    small = TensorDictDataset(x=torch.randn(3, 2), y=torch.arange(3) % 2)
    config = TrainConfig(epochs=1, batch_size=8, drop_last=False, progress=False)
    assert train(Counting(), small, config, tmp_path / "small").steps == 1
