import json

import pytest
import torch
from torch import nn

from distill.augment import Mixup
from distill.engine.checkpoint import latest_checkpoint, load_checkpoint
from distill.engine.config import TrainConfig
from distill.engine.trainer import train
from distill.errors import CheckpointError, ConfigError, NonFiniteLossError
from distill.models import build_model
from distill.tasks.classification.objectives import SupervisedObjective


def _config(**overrides):
    base = dict(steps=30, batch_size=64, lr=0.01, checkpoint_every=10, log_every=5, progress=False, seed=3, schedule="cosine")
    return TrainConfig(**{**base, **overrides})


def _objective():
    torch.manual_seed(0)
    return SupervisedObjective(build_model("mlp", (1, 8, 8), 10, hidden=[32]), augment=Mixup(0.4))


class FailAfter(nn.Module):
    """Wraps an objective; after ``n`` forward calls it either raises (a killed process) or returns NaN."""

    def __init__(self, inner: nn.Module, n: int, fault: str = "crash"):
        super().__init__()
        self.inner, self.n, self.fault, self.calls = inner, n, fault, 0

    @property
    def model(self):
        return self.inner.model

    def forward(self, batch):
        self.calls += 1
        if self.calls > self.n and self.fault == "crash":
            raise KeyboardInterrupt
        out = self.inner(batch)
        if self.calls > self.n:
            out["loss"] = out["loss"] * float("nan")
        return out


def test_resume_equals_uninterrupted_run(digits, tmp_path):
    straight = _objective()
    train(straight, digits.train, _config(), tmp_path / "a")

    crashing = FailAfter(_objective(), 25)
    with pytest.raises(KeyboardInterrupt):
        train(crashing, digits.train, _config(), tmp_path / "b")
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step_0000020"
    resumed = FailAfter(_objective(), 10**9)
    result = train(resumed, digits.train, _config(), tmp_path / "b", resume=True)

    assert result.steps == 30
    for (name, a), b in zip(straight.state_dict().items(), resumed.inner.state_dict().values()):
        assert torch.equal(a, b), name
    rows_a = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    assert rows_a[-1]["train_loss"] == pytest.approx(rows_b[-1]["train_loss"], rel=1e-6)


def test_grad_accumulation_matches_big_batch(digits, tmp_path):
    torch.manual_seed(0)
    a = SupervisedObjective(build_model("mlp", (1, 8, 8), 10, hidden=[16]))
    torch.manual_seed(0)
    b = SupervisedObjective(build_model("mlp", (1, 8, 8), 10, hidden=[16]))
    train(a, digits.train, _config(steps=5, batch_size=64, optimizer="sgd", schedule="constant"), tmp_path / "a")
    # Same samples in the same order, two micro-batches of 32 per step.
    train(b, digits.train, _config(steps=5, batch_size=32, grad_accum=2, optimizer="sgd", schedule="constant"), tmp_path / "b")
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5)


def test_nan_stops_with_step_and_keeps_last_good_checkpoint(digits, tmp_path):
    objective = FailAfter(_objective(), 13, fault="nan")
    with pytest.raises(NonFiniteLossError) as err:
        train(objective, digits.train, _config(), tmp_path)
    message = str(err.value)
    assert "step 14" in message and "step_0000010" in message
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))
    assert ckpt.step == 10
    assert all(torch.isfinite(w).all() for w in ckpt.weights.values())


def test_corrupt_and_foreign_checkpoints_are_refused(digits, tmp_path):
    train(_objective(), digits.train, _config(steps=10), tmp_path)
    folder = latest_checkpoint(tmp_path / "checkpoints")
    other = SupervisedObjective(build_model("mlp", (1, 8, 8), 10, hidden=[8]))
    with pytest.raises(CheckpointError, match="different model"):
        load_checkpoint(folder, expected=other.state_dict())
    (folder / "weights.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(folder)
    (folder / "meta.json").write_text('{"format": "something-else"}')
    with pytest.raises(CheckpointError, match="not written by distill"):
        load_checkpoint(folder)


def test_resume_without_checkpoint_is_explained(digits, tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(_objective(), digits.train, _config(), tmp_path, resume=True)


def test_budget_must_be_set():
    with pytest.raises(ValueError, match="exactly one of 'steps' or 'epochs'"):
        TrainConfig()


def test_bf16_and_tensorboard_on_cpu(digits, tmp_path):
    pytest.importorskip("tensorboard")
    result = train(_objective(), digits.train, _config(steps=6, mixed_precision="bf16", tensorboard=True), tmp_path)
    assert result.steps == 6 and torch.isfinite(torch.tensor(result.final["train_loss"]))
    assert list(tmp_path.rglob("events.out.tfevents*"))
    assert (tmp_path / "metrics.csv").read_text().startswith("step,")


def test_fp16_without_gpu_is_explained(digits, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("fp16 is valid with a GPU")
    with pytest.raises(ConfigError, match=r"mixed_precision 'fp16' needs a CUDA GPU; use 'bf16' or 'no' on CPU"):
        train(_objective(), digits.train, _config(mixed_precision="fp16"), tmp_path)
    assert not (tmp_path / "checkpoints").exists()  # refused before anything trained


class _Regression(nn.Module):
    """Full-batch least squares: every step sees the same batch, so a hand loop can follow the engine."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = nn.Linear(3, 1)

    def forward(self, batch):
        return {"loss": ((self.model(batch["x"]).squeeze(1) - batch["y"]) ** 2).mean()}


def test_a_step_schedule_can_restart_the_momentum_at_its_cut(tmp_path):
    from distill.data import TensorDictDataset

    x, y = torch.randn(16, 3, generator=torch.Generator().manual_seed(1)), torch.randn(16)
    data = TensorDictDataset(x=x, y=y)

    def engine(restart: bool) -> torch.Tensor:
        objective = _Regression()
        config = TrainConfig(steps=6, batch_size=16, optimizer="sgd", lr=0.1, momentum=0.9, schedule="step",
                             decay_at=0.5, decay=0.1, restart_at_decay=restart, progress=False)
        train(objective, data, config, tmp_path / f"restart-{restart}")
        return objective.model.weight.detach().clone()

    reference = _Regression()  # DC's evaluate_synset: a new optimizer at the cut, so the momentum restarts
    for lr in (0.1, 0.01):
        optimizer = torch.optim.SGD(reference.parameters(), lr=lr, momentum=0.9)
        for _ in range(3):
            optimizer.zero_grad()
            reference({"x": x, "y": y})["loss"].backward()
            optimizer.step()
    assert torch.allclose(engine(True), reference.model.weight, atol=1e-6)
    assert not torch.allclose(engine(False), reference.model.weight, atol=1e-4)
