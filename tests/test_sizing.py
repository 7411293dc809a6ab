"""benchmarks/sizing.py: exact parameter counts from the published configurations, and the memory arithmetic."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import sizing  # noqa: E402


def test_parameter_counts_match_the_published_sizes():
    assert sizing.parameters("SmolLM2-135M") == 134_515_008
    assert sizing.parameters("Llama-2-7B") == 6_738_415_616


def test_memory_per_device_follows_the_strategy():
    replicate, shard, cache = (sizing.memory(sizing.Setting("Llama-2-7B", "TinyLlama-1.1B", strategy, 8, 1, 2048))
                               for strategy in ("replicate", "shard", "cache"))
    assert replicate["teacher_weights"] == pytest.approx(2 * 6_738_415_616 / 1e9)
    assert shard["teacher_weights"] == pytest.approx(replicate["teacher_weights"] / 8)
    assert shard["student_states"] == pytest.approx(replicate["student_states"] / 8)
    assert cache["teacher_weights"] == 0 and cache["student_states"] == replicate["student_states"]
    assert replicate["total_gb"] > cache["total_gb"] > shard["total_gb"]
