"""The excess-over-floor metric with its bootstrap interval, and the scorer's floor options."""

from __future__ import annotations

import math

import pytest
import torch

from distill.data.generative import load_generative_data
from distill.errors import ConfigError, DistillError
from distill.metrics.distances import frechet_distance, frechet_from_moments
from distill.metrics.excess import FrechetExcess, SlicedExcess, bootstrap_counts, directions
from distill.metrics.scorer import Scorer


def clouds(n: int = 400, d: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, d, dtype=torch.float64, generator=generator) for _ in range(3))


def explicit_sliced_squared(cloud, real, dirs) -> float:
    projected, target = (cloud @ dirs).sort(0).values, (real @ dirs).sort(0).values
    return float((projected - target).square().mean(0).mean())


def test_bootstrap_counts_draw_n_rows_per_resample_and_are_seeded():
    counts = bootstrap_counts(50, 7, seed=3)
    assert counts.shape == (7, 50) and (counts.sum(1) == 50).all()
    assert torch.equal(counts, bootstrap_counts(50, 7, seed=3))
    assert not torch.equal(counts, bootstrap_counts(50, 7, seed=4))


def test_directions_are_unit_and_evenly_spaced_in_2d():
    dirs = directions(2, 8, seed=0)
    assert torch.allclose(dirs.norm(dim=0), torch.ones(8, dtype=torch.float64))
    angles = torch.atan2(dirs[1], dirs[0])
    assert torch.allclose(angles.diff(), torch.full((7,), math.pi / 8, dtype=torch.float64))
    assert torch.allclose(directions(5, 4, seed=1).norm(dim=0), torch.ones(4, dtype=torch.float64))


def test_weighted_sliced_distance_equals_the_explicitly_resampled_cloud():
    real, reference, samples = clouds()
    excess = SlicedExcess(real, reference, resamples=4, seed=0, projections=16)
    counts = bootstrap_counts(len(samples), 4, seed=9)
    fast = excess._squared(samples * 1.3, counts)
    slow = [explicit_sliced_squared((samples * 1.3).repeat_interleave(row, 0), real, excess.directions)
            for row in counts]
    assert fast.tolist() == pytest.approx(slow, rel=1e-9)


def test_weighted_frechet_equals_the_explicitly_resampled_features():
    real, reference, samples = clouds(d=5)
    excess = FrechetExcess(real, reference, resamples=3, seed=0)
    counts = bootstrap_counts(len(samples), 3, seed=2)
    fast = excess._squared(samples + 0.3, counts)
    for value, row in zip(fast.tolist(), counts):
        resampled = (samples + 0.3).repeat_interleave(row, 0)
        moments = resampled.mean(0), torch.cov(resampled.T)
        assert value == pytest.approx(float(frechet_from_moments(*excess.real_moments, *moments)), rel=1e-9)
    assert float(excess._squared(samples, torch.ones(1, len(samples), dtype=torch.long))) == pytest.approx(
        frechet_distance(real, samples), rel=1e-6)


def test_a_real_draw_has_no_excess_and_a_shifted_one_a_clear_one():
    real, reference, other = clouds(n=1000)
    excess = SlicedExcess(real, reference, resamples=100, seed=0)
    same = excess(other)
    assert same.low == 0.0 and same.value < 3 * excess.floor_spread + 1e-12
    shifted = excess(other + 0.5)
    assert shifted.low > 0.3 and shifted.low <= shifted.value <= shifted.high
    # the excess removes the floor: √(SW2² − floor²) is below the raw distance
    assert shifted.value < math.sqrt(explicit_sliced_squared(other + 0.5, real, excess.directions))


def test_the_interval_separates_two_generators_only_when_they_differ():
    real, reference, other = clouds(n=1000, d=4)
    excess = FrechetExcess(real, reference, resamples=100, seed=0)
    near, far = excess(other * 1.1), excess(other * 1.6)
    assert near.high < far.low
    again = excess(other * 1.1)
    assert again == near  # seeded: the same samples get the same interval


def test_excess_rejects_bad_input():
    real, reference, samples = clouds()
    with pytest.raises(DistillError, match="resamples"):
        SlicedExcess(real, reference, resamples=0)
    with pytest.raises(DistillError, match="level"):
        SlicedExcess(real, reference, level=1.5)
    excess = SlicedExcess(real, reference, resamples=2)
    with pytest.raises(DistillError, match="as many samples as real points"):
        excess(samples[:10])
    with pytest.raises(DistillError, match="same classifier layer"):
        FrechetExcess(real, reference, resamples=2)(torch.randn(len(real), 3))


def toy_splits():
    return load_generative_data("8gaussians", {"n_train": 2000, "n_test": 1000})


def test_scorer_floor_from_test_uses_disjoint_test_halves():
    splits = toy_splits()
    scorer = Scorer(splits, 800, seed=0, conditional=False, floor_from="test")
    assert len(scorer.real) == len(scorer.reference) == 500  # capped at half the test split
    rows = {tuple(r) for r in splits.test.x.tolist()}
    real, reference = {tuple(r) for r in scorer.real.tolist()}, {tuple(r) for r in scorer.reference.tolist()}
    assert real <= rows and reference <= rows and not real & reference
    trained = Scorer(splits, 800, seed=0, conditional=False)  # default: the floor from training points
    assert len(trained.real) == 800 and "floor_spread" not in trained.floor


def test_scorer_with_bootstrap_adds_the_excess_and_the_floor_spread():
    splits = toy_splits()
    scorer = Scorer(splits, 400, seed=0, conditional=False, floor_from="test", bootstrap=50)
    assert scorer.floor["floor_spread"] > 0
    scores = scorer.score(scorer.real * 2)
    assert {"swd", "mmd", "excess", "excess_low", "excess_high"} <= set(scores)
    assert 0 < scores["excess_low"] <= scores["excess"] <= scores["excess_high"]
    diverged = scorer.score(torch.full_like(scorer.real, float("nan")))
    assert math.isnan(diverged["excess"])


def test_scorer_rejects_bad_floor_options():
    splits = toy_splits()
    with pytest.raises(ConfigError, match="floor_from"):
        Scorer(splits, 100, seed=0, conditional=False, floor_from="val")
    with pytest.raises(ConfigError, match="bootstrap"):
        Scorer(splits, 100, seed=0, conditional=False, bootstrap=-1)
