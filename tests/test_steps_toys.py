"""2-D toy distributions: shape, determinism, scale, and the structure each one promises."""

from __future__ import annotations

import math

import pytest
import torch

from distill.data.base import DataSplits
from distill.data.tensors import InMemoryDataset
from distill.data.toys import (
    EIGHT_GAUSSIAN_CENTRES,
    MOONS_CENTRE,
    MOONS_SCALE,
    TOYS,
    sample_toy,
    toy_dataset,
)
from distill.errors import DistillError

NAMES = ["8gaussians", "checkerboard", "moons", "swissroll"]
N = 2000


def test_registry_lists_the_four_toys():
    assert TOYS.names() == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_determinism(name):
    x = sample_toy(name, N, seed=3)
    assert x.shape == (N, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert torch.equal(x, sample_toy(name, N, seed=3))
    assert not torch.allclose(x, sample_toy(name, N, seed=4))
    # the raw sampler draws only from the generator it is given
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    torch.manual_seed(123)
    a = TOYS.get(name)(50, g1)
    torch.manual_seed(456)
    assert torch.equal(a, TOYS.get(name)(50, g2))


@pytest.mark.parametrize("name", NAMES)
def test_similar_scale(name):
    x = sample_toy(name, N, seed=0)
    assert x.abs().max() < 3.5
    std = x.std(dim=0)
    assert ((std > 0.5) & (std < 2.0)).all(), std
    assert x.mean(dim=0).abs().max() < 0.5


def test_checkerboard_points_lie_on_black_squares():
    x = sample_toy("checkerboard", N, seed=1)
    assert (x >= -2).all() and (x <= 2).all()
    cells = torch.floor(x).long()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()
    # all 8 black squares are used, roughly equally
    counts = torch.unique(cells + 2, dim=0, return_counts=True)[1]
    assert len(counts) == 8 and counts.min() > N / 8 * 0.7


def test_eight_gaussians_points_are_near_a_centre():
    x = sample_toy("8gaussians", N, seed=2)
    dist = torch.cdist(x, EIGHT_GAUSSIAN_CENTRES)
    nearest = dist.min(dim=1)
    assert (nearest.values < 0.5).all()  # 5 std
    assert torch.allclose(EIGHT_GAUSSIAN_CENTRES.norm(dim=1), torch.full((8,), 2.0))
    counts = torch.bincount(nearest.indices, minlength=8)
    assert counts.min() > N / 8 * 0.7


def _distance_to_arc(p: torch.Tensor, centre: tuple[float, float], upper: bool) -> torch.Tensor:
    """Distance from points p to the unit half circle (upper or lower half) around centre."""
    q = p - torch.tensor(centre)
    on_side = q[:, 1] >= 0 if upper else q[:, 1] <= 0
    to_circle = (q.norm(dim=1) - 1).abs()
    ends = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    to_ends = torch.cdist(q, ends).min(dim=1).values
    return torch.where(on_side, to_circle, to_ends)


def test_moons_are_two_half_circles():
    x = sample_toy("moons", N, seed=5)
    raw = x / MOONS_SCALE + torch.tensor(MOONS_CENTRE)  # back to sklearn's coordinates
    outer = _distance_to_arc(raw, (0.0, 0.0), upper=True)
    inner = _distance_to_arc(raw, (1.0, 0.5), upper=False)
    assert (torch.minimum(outer, inner) < 0.25).all()  # noise std 0.05
    on_outer = (outer < inner).float().mean()
    assert 0.4 < on_outer < 0.6
    # the two clusters are separated: the moons' mean points differ a lot
    mean_outer, mean_inner = raw[outer < inner].mean(0), raw[outer >= inner].mean(0)
    assert (mean_outer - mean_inner).norm() > 1.0


def test_swissroll_points_lie_near_the_spiral():
    t = torch.linspace(1.5 * math.pi, 4.5 * math.pi, 5000)
    curve = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 5
    x = sample_toy("swissroll", N, seed=6)
    dist = torch.cdist(x, curve).min(dim=1).values
    assert dist.max() < 0.5 and dist.mean() < 0.15  # noise std 0.1
    # uniform points in the same box are much farther from the curve on average
    box = 3 * (2 * torch.rand(N, 2, generator=torch.Generator().manual_seed(0)) - 1)
    assert torch.cdist(box, curve).min(dim=1).values.mean() > 2 * dist.mean()


def test_unknown_name_and_bad_n():
    with pytest.raises(DistillError, match="checkerboard") as err:
        sample_toy("checkerbord", 10, seed=0)
    assert "Did you mean 'checkerboard'" in str(err.value)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(DistillError, match="positive integer"):
            sample_toy("moons", bad, seed=0)
    with pytest.raises(DistillError, match="8gaussians"):
        toy_dataset("spiral", 10, 10)


def test_toy_dataset_splits():
    splits = toy_dataset("moons", 300, 100, seed=0)
    assert isinstance(splits, DataSplits)
    assert isinstance(splits.train, InMemoryDataset) and isinstance(splits.test, InMemoryDataset)
    assert splits.input_shape == (2,) and splits.num_classes == 1 and splits.name == "toy:moons"
    assert splits.train.x.shape == (300, 2) and splits.test.x.shape == (100, 2)
    assert splits.train.y.dtype == torch.long and not splits.train.y.any() and not splits.test.y.any()
    # independent streams: test is not the start of train, and does not depend on n_train
    assert not torch.allclose(splits.train.x[:100], splits.test.x)
    other = toy_dataset("moons", 50, 100, seed=0)
    assert torch.equal(other.test.x, splits.test.x)
    assert not torch.equal(toy_dataset("moons", 300, 100, seed=1).train.x, splits.train.x)
    with pytest.raises(DistillError, match="n_test"):
        toy_dataset("moons", 10, 0)
