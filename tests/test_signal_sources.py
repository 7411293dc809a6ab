"""Every teacher signal source answers the same call, ``for_batch(batch)``, and each cache refuses a batch
it was not built for."""

from __future__ import annotations

import pytest
import torch

from distill.errors import DistillError
from distill.losses.sparse import TopKTargets
from distill.models import build_model
from distill.signals import CachedTeacher, LiveSignal, TeacherSignal, TopKCache, build_teacher_cache, build_topk_cache


def test_live_and_dense_cache_give_the_same_targets(digits, tmp_path):
    torch.manual_seed(0)
    teacher = build_model("convnet", (1, 8, 8), 10, channels=[8, 8, 8]).eval()
    cached = CachedTeacher(build_teacher_cache(teacher, digits.train, tmp_path))
    live = LiveSignal(teacher)
    assert isinstance(cached, TeacherSignal) and isinstance(live, TeacherSignal)
    x = torch.stack([digits.train[i][0] for i in (5, 0, 9)])
    batch = {"x": x, "y": torch.zeros(3, dtype=torch.long)}
    torch.testing.assert_close(cached.for_batch(batch), live.for_batch(batch), atol=1e-2, rtol=1e-2)
    assert not live.for_batch(batch).requires_grad
    with pytest.raises(DistillError, match="not in the teacher cache"):
        cached.for_batch({"x": x + 0.01})
    with pytest.raises(DistillError, match="by their 'x' entry"):
        cached.for_batch({"inputs": x})
    with pytest.raises(DistillError, match="reads batch key 'x'"):
        live.for_batch({"inputs": x})


def test_live_signal_calls_with_keywords_and_picks_an_output_entry():
    class Model(torch.nn.Module):
        def forward(self, input_ids):
            return {"logits": input_ids.float() * 2, "other": input_ids}

    signal = LiveSignal(Model(), inputs={"ids": "input_ids"}, output="logits")
    torch.testing.assert_close(signal.for_batch({"ids": torch.arange(3)}), torch.arange(3).float() * 2)
    with pytest.raises(DistillError, match="output entry 'scores'"):
        LiveSignal(Model(), inputs={"ids": "input_ids"}, output="scores").for_batch({"ids": torch.arange(3)})


def test_topk_cache_serves_a_batch_by_its_rows(tmp_path):
    table = torch.nn.Embedding(30, 30)
    blocks = torch.randint(0, 30, (5, 4), generator=torch.Generator().manual_seed(0))
    identity = {"teacher": "t"}
    build_topk_cache(lambda ids: table(ids).detach(), blocks, tmp_path, k=3, identity=identity, progress=False)
    cache = TopKCache(tmp_path, identity, blocks)
    got = cache.for_batch({"input_ids": blocks[[3, 1]], "row": torch.tensor([3, 1])})
    assert isinstance(got, TopKTargets) and got.shape == (2, 4)
    assert torch.equal(got.indices, cache.targets(torch.tensor([3, 1])).indices)
    with pytest.raises(DistillError, match="'row' entry"):
        cache.for_batch({"input_ids": blocks[:2]})
    with pytest.raises(DistillError, match="block rows must lie in"):
        cache.for_batch({"row": torch.tensor([5])})
