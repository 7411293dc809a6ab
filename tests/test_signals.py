import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

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


def _dataset(x: torch.Tensor) -> TensorDataset:
    return TensorDataset(x, torch.zeros(len(x), dtype=torch.long))


def _small_cache(folder, n: int = 32, taps=("output",)):
    teacher = build_model("mlp", (1, 8), 3, hidden=[4]).eval()
    return build_teacher_cache(teacher, _dataset(torch.randn(n, 1, 8)), folder, taps=taps)


def test_fingerprints_see_every_bit_and_ignore_batch_order():
    x = torch.randn(6, 1, 8, 8)
    keys = input_fingerprints(x)
    assert torch.equal(input_fingerprints(x.flip(0)), keys.flip(0))
    nudged = x.clone()
    nudged[0, 0, 3, 3] = torch.nextafter(nudged[0, 0, 3, 3], torch.tensor(10.0))
    assert input_fingerprints(nudged)[0] != keys[0] and torch.equal(input_fingerprints(nudged)[1:], keys[1:])


def test_float64_fingerprints_see_bits_below_float32_precision():
    x = torch.ones(2, 5, dtype=torch.float64)
    x[1, 2] += 1e-12  # the same value once rounded to float32
    keys = input_fingerprints(x)
    assert keys[0] != keys[1]


def test_fingerprint_coefficients_are_drawn_once_per_width(monkeypatch):
    draws = []
    randint = torch.randint
    monkeypatch.setattr(torch, "randint", lambda *a, **k: draws.append(a) or randint(*a, **k))
    x = torch.randn(4, 3, 7, 11)  # a width no other test uses
    first = input_fingerprints(x)
    for _ in range(3):
        assert torch.equal(input_fingerprints(x), first)
    assert len(draws) <= 1


def test_cache_answers_like_the_live_teacher(cached, digits):
    teacher, cache = cached
    x = digits.train.x[torch.tensor([5, 900, 3, 17])]
    with torch.no_grad():
        assert torch.allclose(cache(x), teacher(x), atol=2e-2, rtol=1e-2)


def test_every_row_is_found_in_any_order(cached, digits):
    teacher, cache = cached
    order = torch.randperm(len(digits.train))
    with torch.no_grad():
        served = cache(digits.train.x[order])
        assert torch.allclose(served, teacher(digits.train.x[order]), atol=2e-2, rtol=1e-2)
    assert served.dtype == torch.float32 and served.device == digits.train.x.device
    assert cache(digits.train.x[:0]).shape == (0, 10)


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


def test_a_tap_that_was_not_cached_is_refused(cached):
    _, cache = cached
    with pytest.raises(DistillError, match="has no module 'conv2'"):
        Distiller(build_model("mlp", (1, 8, 8), 10, hidden=[16]), cache, {("fc1", "conv2"): "sp"})


def test_augmented_or_foreign_inputs_are_refused(cached, digits):
    _, cache = cached
    x = digits.train.x[:8]
    with pytest.raises(DistillError, match="randomly augmented"):
        cache(Mixup(1.0)(x).x)
    with pytest.raises(DistillError, match="not in the teacher cache"):
        cache(digits.test.x[:8])


def test_keys_beyond_both_ends_of_the_cache_are_refused(tmp_path):
    folder = _small_cache(tmp_path, n=4)
    cached_keys = np.load(folder / "keys.npy")
    keys = input_fingerprints(x := torch.randn(200, 1, 8))
    above, below = keys > int(cached_keys.max()), keys < int(cached_keys.min())
    assert above.any() and below.any()
    cache = CachedTeacher(folder)
    for part in (x[above], x[below]):
        with pytest.raises(DistillError, match=f"{len(part)} of {len(part)} inputs are not in the teacher cache"):
            cache(part)


def test_inputs_of_another_dtype_or_shape_are_refused(cached, digits):
    _, cache = cached
    x = digits.train.x[:4]
    with pytest.raises(DistillError, match=r"built from float32 inputs of shape \(1, 8, 8\), got float64"):
        cache(x.double())
    with pytest.raises(DistillError, match=r"got float32 inputs of shape \(1, 8, 4\)"):
        cache(x[..., :4])


def test_repeated_inputs_are_refused_at_build(tmp_path):
    x = torch.randn(6, 1, 8)
    x[4] = x[1]
    with pytest.raises(DistillError, match="identical inputs \\(samples 1 and 4, 1 repeat"):
        build_teacher_cache(build_model("mlp", (1, 8), 3, hidden=[4]), _dataset(x), tmp_path)


def test_a_failed_rebuild_leaves_no_stale_cache(tmp_path):
    _small_cache(tmp_path, n=32)
    x = torch.randn(8, 1, 8)
    x[3] = x[0]
    with pytest.raises(DistillError, match="identical inputs"):
        build_teacher_cache(build_model("mlp", (1, 8), 3, hidden=[4]), _dataset(x), tmp_path)
    with pytest.raises(DistillError, match="not a teacher cache"):
        CachedTeacher(tmp_path)


def test_a_cache_whose_size_disagrees_is_refused(tmp_path):
    folder = _small_cache(tmp_path, n=32)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "size": 40}))
    with pytest.raises(DistillError, match=r"inconsistent: meta.json says 40 inputs, its arrays hold \[32\]"):
        CachedTeacher(folder)


def test_a_cache_missing_a_tap_file_is_refused(tmp_path):
    folder = _small_cache(tmp_path, taps=("output", "fc1"))
    (folder / "fc1.f16").unlink()
    with pytest.raises(DistillError, match="incomplete.*rebuild it"):
        CachedTeacher(folder)


def test_a_cache_without_output_is_refused_when_loaded(tmp_path):
    with pytest.raises(DistillError, match="no 'output' tap"):
        CachedTeacher(_small_cache(tmp_path, taps=("fc1",)))


class _DeviceProbe(nn.Module):
    """A teacher whose parameter lives on the meta device; it records where its inputs arrive."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(3, device="meta"))
        self.seen: set[torch.device] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.add(x.device)
        return torch.zeros(len(x), 3)


def test_build_moves_batches_to_the_teachers_device(tmp_path):
    probe = _DeviceProbe()
    build_teacher_cache(probe, _dataset(torch.randn(10, 1, 8)), tmp_path, batch_size=4)
    assert probe.seen == {torch.device("meta")}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_teacher_and_inputs(tmp_path, digits):
    teacher = build_model("convnet", (1, 8, 8), 10, channels=[8, 8, 8]).eval().cuda()
    cache = CachedTeacher(build_teacher_cache(teacher, digits.train, tmp_path, taps=["output", "conv3"]))
    x = digits.train.x[:64]
    assert torch.equal(input_fingerprints(x.cuda()).cpu(), input_fingerprints(x))
    with torch.no_grad():
        served = cache(x.cuda())
        assert served.device == x.cuda().device
        assert torch.allclose(served, teacher(x.cuda()), atol=2e-2, rtol=1e-2)
        assert torch.equal(cache(x), served.cpu())


def test_not_a_cache(tmp_path):
    with pytest.raises(DistillError, match="not a teacher cache"):
        CachedTeacher(tmp_path)
