"""A CachedTeacher driven through the engine trains the student the live teacher trains.

The cache stores the teacher's logits and a feature map in float16, so the two runs
are not bit-identical; stated tolerance: every student weight within 0.1 % of the largest
distance the live run moved a weight from its initialisation (the float16 rounding of
the targets accounts for ~2e-5 of it; a cache serving wrong rows or another teacher's
outputs for far more, as the control with another teacher shows: ~70 %).
"""

import pytest
import torch

from distill import Distiller
from distill.augment import Mixup
from distill.engine.config import TrainConfig
from distill.engine.trainer import train
from distill.errors import DistillError
from distill.models import build_model
from distill.signals import CachedTeacher, build_teacher_cache
from distill.tasks.classification.metrics import evaluate_classifier
from distill.tasks.classification.objectives import DistillObjective, SupervisedObjective

PAIRS = {("output", "output"): "kd", ("fc1", "conv3"): ("sp", 10.0)}


def _config(**overrides) -> TrainConfig:
    base = dict(steps=20, batch_size=64, optimizer="sgd", lr=0.05, momentum=0.9, log_every=5, progress=False, seed=5)
    return TrainConfig(**{**base, **overrides})


def _teacher(digits, tmp_path, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    teacher = build_model("convnet", (1, 8, 8), 10, channels=[8, 16, 16])
    train(SupervisedObjective(teacher), digits.train, _config(steps=30, optimizer="adam", lr=0.01), tmp_path)
    return teacher.eval()


def _student() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("mlp", (1, 8, 8), 10, hidden=[32])


def _distil(teacher, digits, folder, augment=None) -> torch.Tensor:
    """Train a fresh student from ``teacher`` through the engine; its final weights, flattened."""
    student = _student()
    objective = DistillObjective(Distiller(student, teacher, PAIRS), augment)
    result = train(objective, digits.train, _config(), folder,
                   evaluator=lambda model, accelerator: evaluate_classifier(model, digits.test, accelerator))
    assert result.steps == 20 and 0.0 <= result.final["acc"] <= 1.0
    return torch.cat([p.detach().flatten() for p in student.parameters()])


@pytest.fixture(scope="module")
def setup(digits, tmp_path_factory):
    torch.set_num_threads(1)  # conftest's autouse fixture runs after module-scoped ones
    folder = tmp_path_factory.mktemp("cached")
    teacher = _teacher(digits, folder / "teacher", seed=1)
    cache = build_teacher_cache(teacher, digits.train, folder / "cache", taps=["output", "conv3"])
    return folder, teacher, CachedTeacher(cache)


def test_cached_teacher_trains_the_student_the_live_teacher_trains(setup, digits, tmp_path):
    folder, teacher, cached = setup
    initial = torch.cat([p.detach().flatten() for p in _student().parameters()])
    live = _distil(teacher, digits, tmp_path / "live")
    offline = _distil(cached, digits, tmp_path / "cached")
    moved = (live - initial).abs().max()
    assert moved > 0.05
    assert (offline - live).abs().max() <= 1e-3 * moved
    # control: another teacher leads elsewhere, far beyond the tolerance
    other = _distil(_teacher(digits, tmp_path / "other_teacher", seed=2), digits, tmp_path / "other")
    assert (other - live).abs().max() > 0.1 * moved


def test_mixup_with_a_cached_teacher_is_refused(setup, digits, tmp_path):
    _, _, cached = setup
    with pytest.raises(DistillError, match=r"CachedTeacher serves only the exact inputs it cached.*live teacher"):
        _distil(cached, digits, tmp_path, augment=Mixup(1.0))
    assert not (tmp_path / "checkpoints").exists()  # refused when the objective is built, before any step
    x = next(iter(torch.utils.data.DataLoader(digits.test, batch_size=8)))[0]
    with pytest.raises(DistillError, match=r"8 of 8 inputs are not in the teacher cache"):
        cached(x)  # inputs it never saw (here: the test split) are refused at the first batch
