import pytest
import torch
from torch import nn

from distill import Distiller
from distill.errors import DistillError
from distill.multi_teacher import MultiTeacher


def _linear(seed):
    torch.manual_seed(seed)
    return nn.Linear(4, 3)


def test_weighted_logits_and_probabilities():
    a, b = _linear(0), _linear(1)
    x = torch.randn(5, 4)
    logits = MultiTeacher([a, b], weights=[3, 1])(x)
    assert torch.allclose(logits, 0.75 * a(x) + 0.25 * b(x), atol=1e-6)
    probs = MultiTeacher([a, b], combine="probs")(x).softmax(-1)
    assert torch.allclose(probs, 0.5 * a(x).softmax(-1) + 0.5 * b(x).softmax(-1), atol=1e-6)


def test_plugs_into_distiller_with_per_teacher_taps():
    teacher = MultiTeacher([_linear(0), _linear(1)])
    student = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    distiller = Distiller(student, teacher, {("output", "output"): "kd", ("0", "teachers.1"): "sp"})
    distiller(torch.randn(6, 4))
    losses = distiller.compute_losses()
    assert set(losses) == {"kd", "sp", "total"} and torch.isfinite(losses["total"])


def test_bad_weights_and_mismatched_teachers():
    with pytest.raises(DistillError, match="weights"):
        MultiTeacher([_linear(0)], weights=[1, 2])
    with pytest.raises(DistillError, match="same classes"):
        MultiTeacher([_linear(0), nn.Linear(4, 5)])(torch.randn(2, 4))
