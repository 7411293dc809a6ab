import pytest
import torch

from distill import Distiller
from distill.augment import Mixup
from distill.errors import DistillError
from distill.models import build_model
from distill.signals import CachedTeacher, build_teacher_cache, input_fingerprints


@pytest.fixture(scope="module")
def cached(digits, tmp_path_factory):
    torch.manual_seed(0)
    teacher = build_model("convnet", (1, 8, 8), 10, channels=[8, 8, 8]).eval()
    folder = build_teacher_cache(teacher, digits.train, tmp_path_factory.mktemp("tc"), taps=["output", "conv3"])
    return teacher, CachedTeacher(folder)


def test_fingerprints_are_exact_and_order_free():
    x = torch.randn(6, 1, 8, 8)
    keys = input_fingerprints(x)
    assert torch.equal(input_fingerprints(x.flip(0)), keys.flip(0))
    nudged = x.clone()
    nudged[0, 0, 3, 3] = torch.nextafter(nudged[0, 0, 3, 3], torch.tensor(10.0))
    assert input_fingerprints(nudged)[0] != keys[0] and torch.equal(input_fingerprints(nudged)[1:], keys[1:])


def test_cache_answers_like_the_live_teacher(cached, digits):
    teacher, cache = cached
    x = digits.train.x[torch.tensor([5, 900, 3, 17])]
    with torch.no_grad():
        assert torch.allclose(cache(x), teacher(x), atol=2e-2, rtol=1e-2)


def test_cached_features_reach_the_same_taps(cached, digits):
    teacher, cache = cached
    x = digits.train.x[:16]
    pairs = {("output", "output"): "kd", ("fc1", "conv3"): "sp"}
    live = Distiller(build_model("mlp", (1, 8, 8), 10, hidden=[16]), teacher, pairs)
    torch.manual_seed(1)
    offline = Distiller(build_model("mlp", (1, 8, 8), 10, hidden=[16]), cache, pairs)
    torch.manual_seed(1)
    live.student.load_state_dict(offline.student.state_dict())
    live(x)
    offline(x)
    a, b = live.compute_losses(), offline.compute_losses()
    assert torch.allclose(a["kd"], b["kd"], rtol=2e-2, atol=1e-3)
    assert torch.allclose(a["sp"], b["sp"], rtol=2e-2, atol=1e-4)


def test_augmented_or_foreign_inputs_are_refused(cached, digits):
    _, cache = cached
    x = digits.train.x[:8]
    with pytest.raises(DistillError, match="randomly augmented"):
        cache(Mixup(1.0)(x).x)
    with pytest.raises(DistillError, match="not in the teacher cache"):
        cache(digits.test.x[:8])


def test_not_a_cache(tmp_path):
    with pytest.raises(DistillError, match="not a teacher cache"):
        CachedTeacher(tmp_path)
