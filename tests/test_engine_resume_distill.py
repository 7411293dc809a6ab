"""Resuming a distillation run midway gives exactly the run that never stopped.

A Distiller carries state besides weights: the ``passes`` counter that drives a loss's
warm-up, and CRD's FIFO memory banks (embeddings and write positions). Both must travel
through checkpoints, or a resumed run ramps its losses again from zero and contrasts
against the wrong negatives. The run crashes after 15 steps, resumes from the
checkpoint at step 10 (inside the 20-pass warm-up, with most of the bank written before
the crash still unreplaced at the end) and must end bit for bit where the straight run ends.
"""

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from distill import Distiller, Match
from distill.engine.checkpoint import latest_checkpoint, load_checkpoint
from distill.engine.config import TrainConfig
from distill.engine.trainer import train
from distill.models import build_model
from distill.tasks.classification.objectives import DistillObjective

BATCH, BANK, WARMUP = 32, 1024, 20  # 30 steps write 960 of the bank's 1024 rows


def _config() -> TrainConfig:
    return TrainConfig(steps=30, batch_size=BATCH, lr=0.01, checkpoint_every=10, log_every=5, progress=False,
                       seed=3, schedule="cosine")


def _objective(digits) -> DistillObjective:
    torch.manual_seed(0)
    teacher = build_model("convnet", (1, 8, 8), 10, channels=[8, 8, 8])
    student = build_model("mlp", (1, 8, 8), 10, hidden=[32])
    pairs = {("output", "output"): Match("kd", warmup=WARMUP),
             ("fc1", "conv3"): Match("crd", 0.5, options={"dim": 16, "bank_size": BANK})}
    return DistillObjective(Distiller(student, teacher, pairs, example_input=digits.train.x[:2]))


class CrashAfter(nn.Module):
    """Wraps an objective; its forward call number ``n + 1`` raises, as a killed process would."""

    def __init__(self, inner: nn.Module, n: int) -> None:
        super().__init__()
        self.inner, self.n, self.calls = inner, n, 0

    @property
    def model(self) -> nn.Module:
        return self.inner.model

    def forward(self, batch):
        self.calls += 1
        if self.calls > self.n:
            raise KeyboardInterrupt
        return self.inner(batch)


def _state_of(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``weights`` named as the bare objective names them (without ``CrashAfter``'s ``inner.``)."""
    return {k.removeprefix("inner."): v for k, v in weights.items()}


def _state(objective: nn.Module) -> dict[str, torch.Tensor]:
    return _state_of(objective.state_dict())


def _banks(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if "_bank." in k}


@pytest.fixture(scope="module")
def runs(digits, tmp_path_factory):
    """The straight run, the run that crashed after 15 steps and was resumed, and a copy of the crashed
    run's step-10 checkpoint (the resumed run's later checkpoints rotate it out)."""
    torch.set_num_threads(1)  # conftest's autouse fixture runs after module-scoped ones
    folder = tmp_path_factory.mktemp("resume")
    straight = _objective(digits)
    train(straight, digits.train, _config(), folder / "straight")
    crashing = CrashAfter(_objective(digits), 15)
    with pytest.raises(KeyboardInterrupt):
        train(crashing, digits.train, _config(), folder / "resumed")
    last = latest_checkpoint(folder / "resumed" / "checkpoints")
    assert last.name == "step_0000010"
    shutil.copytree(last, folder / "crashed_step_10")
    resumed = CrashAfter(_objective(digits), 10**9)
    result = train(resumed, digits.train, _config(), folder / "resumed", resume=True)
    assert result.steps == 30 and resumed.calls == 20
    return folder, straight, resumed


def test_the_state_that_resume_needs_is_in_the_checkpoint(runs):
    folder, _, _ = runs
    saved = load_checkpoint(folder / "straight" / "checkpoints" / "step_0000020").weights
    assert int(saved["distiller.passes"]) == 20
    assert sorted(_banks(saved)) == sorted(f"distiller.pairs.1.loss.{side}_bank.{part}"
                                           for side in ("student", "teacher") for part in ("bank", "head"))
    assert int(saved["distiller.pairs.1.loss.student_bank.head"]) == 20 * BATCH
    assert not any(".teacher." in f".{k}" for k in saved)  # the frozen teacher is not checkpointed
    crashed = _state_of(load_checkpoint(folder / "crashed_step_10").weights)
    assert int(crashed["distiller.passes"]) == 10
    assert int(crashed["distiller.pairs.1.loss.teacher_bank.head"]) == 10 * BATCH


def test_resumed_distillation_equals_the_uninterrupted_run(runs):
    _, straight, resumed = runs
    a, b = _state(straight), _state(resumed)
    assert a.keys() == b.keys()
    assert int(b["distiller.passes"]) == 30  # 10 restored + 20 after the resume: the warm-up ended on time
    assert int(b["distiller.pairs.1.loss.student_bank.head"]) == 30 * BATCH
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


@pytest.mark.parametrize("forget", ["passes", "banks"])
def test_a_resume_that_lost_this_state_would_be_caught(forget, digits, runs, tmp_path):
    """The comparison above can fail: resuming from a checkpoint without the warm-up counter (or
    with fresh banks) ends elsewhere."""
    folder, straight, _ = runs
    shutil.copytree(folder / "crashed_step_10", tmp_path / "checkpoints" / "step_0000010")
    weights_file = tmp_path / "checkpoints" / "step_0000010" / "weights.safetensors"
    weights = load_file(str(weights_file))
    fresh = CrashAfter(_objective(digits), 10**9).state_dict()
    lost = ["inner.distiller.passes"] if forget == "passes" else list(_banks(weights))
    assert lost and all(not torch.equal(weights[k], fresh[k]) for k in lost)
    save_file({**weights, **{k: fresh[k].clone() for k in lost}}, str(weights_file))
    resumed = CrashAfter(_objective(digits), 10**9)
    train(resumed, digits.train, _config(), tmp_path, resume=True)
    a, b = _state(straight), _state(resumed)
    differing = {k for k in a if not torch.equal(a[k], b[k])}
    assert "distiller.student.head.weight" in differing and "distiller.student.fc1.weight" in differing
