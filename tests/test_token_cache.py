"""The top-k teacher cache: what it stores, what it serves, and what it refuses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distill.errors import DistillError
from distill.signals import TopKCache, blocks_hash, build_topk_cache, tail_mass, topk_reconstruction_kl

IDENTITY = {"tokenizer": "t1", "text": "x1", "packing": "p1", "teacher": "m1"}


@pytest.fixture
def teacher():
    torch.manual_seed(0)
    table = torch.nn.Embedding(50, 50)
    return lambda ids: table(ids).detach() * 3


@pytest.fixture
def blocks():
    return torch.randint(0, 50, (6, 5), generator=torch.Generator().manual_seed(1))


def test_cache_holds_the_teachers_top_k(tmp_path, teacher, blocks):
    build_topk_cache(teacher, blocks, tmp_path, k=4, identity=IDENTITY, batch_size=4, progress=False)
    cache = TopKCache(tmp_path, IDENTITY, blocks)
    rows = torch.tensor([4, 0, 4])
    got = cache.targets(rows)
    top = torch.log_softmax(teacher(blocks[rows]), -1).topk(4, -1)
    assert torch.equal(got.indices, top.indices)
    torch.testing.assert_close(got.logprobs, top.values, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(got.tail_mass(), 1 - top.values.exp().sum(-1), atol=3e-3, rtol=0)
    assert len(cache) == 6 and cache.k == 4 and cache.vocab_size == 50 and cache.bytes_per_token == 4 * (2 + 2)
    assert cache._indices.dtype == np.uint16


def test_temperature_is_stored_and_served(tmp_path, teacher, blocks):
    build_topk_cache(teacher, blocks, tmp_path, k=3, identity=IDENTITY, temperature=2.0, progress=False)
    got = TopKCache(tmp_path, IDENTITY).targets(torch.tensor([1]))
    assert got.temperature == 2.0
    expected = torch.log_softmax(teacher(blocks[1:2]) / 2, -1).topk(3, -1).values
    torch.testing.assert_close(got.logprobs, expected, atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("part", sorted(IDENTITY))
def test_each_changed_identity_is_refused_by_name(tmp_path, teacher, blocks, part):
    build_topk_cache(teacher, blocks, tmp_path, k=2, identity=IDENTITY, progress=False)
    with pytest.raises(DistillError, match=f"the {part} differs"):
        TopKCache(tmp_path, {**IDENTITY, part: "other"})
    with pytest.raises(DistillError, match="differs"):
        TopKCache(tmp_path, {k: v for k, v in IDENTITY.items() if k != part})


def test_other_blocks_and_rows_are_refused(tmp_path, teacher, blocks):
    build_topk_cache(teacher, blocks, tmp_path, k=2, identity=IDENTITY, progress=False)
    with pytest.raises(DistillError, match="sequence packing"):
        TopKCache(tmp_path, IDENTITY, blocks[:, [1, 0, 2, 3, 4]])
    with pytest.raises(DistillError, match=r"\[0, 6\)"):
        TopKCache(tmp_path, IDENTITY).targets(torch.tensor([6]))
    assert blocks_hash(blocks) != blocks_hash(blocks.reshape(5, 6))


def test_failed_or_damaged_builds_are_refused(tmp_path, teacher, blocks):
    build_topk_cache(teacher, blocks, tmp_path, k=2, identity=IDENTITY, progress=False)
    calls = []

    def failing(ids):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("teacher died")
        return teacher(ids)

    with pytest.raises(RuntimeError):
        build_topk_cache(failing, blocks, tmp_path, k=2, identity=IDENTITY, batch_size=3, progress=False)
    with pytest.raises(DistillError, match="not a top-k cache"):
        TopKCache(tmp_path, IDENTITY)
    build_topk_cache(teacher, blocks, tmp_path, k=2, identity=IDENTITY, progress=False)
    np.save(tmp_path / "indices.npy", np.zeros((5, 5, 2), np.uint16))
    with pytest.raises(DistillError, match="inconsistent"):
        TopKCache(tmp_path, IDENTITY)
    with pytest.raises(DistillError, match="k must lie"):
        build_topk_cache(teacher, blocks, tmp_path, k=50, identity=IDENTITY, progress=False)
    with pytest.raises(DistillError, match="2-D integer"):
        build_topk_cache(teacher, blocks.float(), tmp_path, k=2, identity=IDENTITY, progress=False)


def test_reconstruction_error_by_hand():
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.15), math.log(0.05)]])
    # top-2 kept; the tail 0.2 spread as 0.1 / 0.1 over the two others
    expected = 0.15 * math.log(0.15 / 0.1) + 0.05 * math.log(0.05 / 0.1)
    assert topk_reconstruction_kl(logits, 2).item() == pytest.approx(expected, rel=1e-5)
    assert topk_reconstruction_kl(logits, 3).item() == pytest.approx(0.0, abs=1e-7)
    assert tail_mass(logits, 2).item() == pytest.approx(0.2, rel=1e-5)
    wide = torch.randn(3, 100)
    errors = [topk_reconstruction_kl(wide, k).mean().item() for k in (2, 8, 32, 99)]
    assert errors == sorted(errors, reverse=True) and errors[-1] == pytest.approx(0.0, abs=1e-6)
