import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from distill.errors import DistillError
from distill.metrics.classification import accuracy as label_agreement
from distill.metrics.distances import frechet_distance, mmd_rbf, precision_recall, sliced_wasserstein
from distill.metrics.features import features
from distill.models import build_model


def gaussian(n, d, seed, shift=0.0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + shift


def test_sliced_wasserstein_identical_and_shifted():
    x = gaussian(300, 3, 0)
    assert sliced_wasserstein(x, x) == pytest.approx(0.0, abs=1e-12)
    v = torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64)
    # each projection shifts by θ·v exactly, so SW2 = sqrt(E_θ (θ·v)²) = ‖v‖ / sqrt(d)
    expected = v.norm().item() / math.sqrt(3)
    assert sliced_wasserstein(x, x + v, projections=2000) == pytest.approx(expected, rel=0.05)
    assert sliced_wasserstein(x.numpy(), (x + v).numpy()) == sliced_wasserstein(x, x + v)


def test_mmd_same_distribution_near_zero_and_shift_positive():
    x, y = gaussian(200, 2, 0), gaussian(200, 2, 1)
    same = mmd_rbf(x, y)
    shifted = mmd_rbf(x, gaussian(200, 2, 1, shift=2.0))
    assert abs(same) < 0.02
    assert shifted > 0.5 and shifted > 20 * abs(same)
    assert mmd_rbf(x.float(), y.numpy()) == pytest.approx(same)


def test_mmd_matches_direct_unbiased_estimate():
    x, y = gaussian(5, 2, 0), gaussian(4, 2, 1, shift=0.5)

    def k(a, b):
        return sum(math.exp(-float((a - b).square().sum()) / (2 * s * s)) for s in (0.5, 1.0))

    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(y[i], y[j]) for i in range(4) for j in range(4) if i != j) / 12
    xy = sum(k(a, b) for a in x for b in y) / 20
    assert mmd_rbf(x, y, bandwidths=(0.5, 1.0)) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_frechet_one_dimensional_closed_form():
    x = torch.tensor([[-1.0], [1.0]]) + 2.0  # mean 2, unbiased variance 2
    y = torch.tensor([[-3.0], [3.0]]) - 1.0  # mean -1, unbiased variance 18
    expected = (2 - (-1)) ** 2 + (math.sqrt(2) - math.sqrt(18)) ** 2
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-12)


def test_frechet_matches_formula_on_empirical_stats_and_is_symmetric():
    x = gaussian(400, 4, 0) @ torch.randn(4, 4, dtype=torch.float64)
    y = gaussian(300, 4, 1, shift=0.7)
    a, b = x.numpy(), y.numpy()
    mu_a, mu_b, cov_a, cov_b = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    expected = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root)
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(y, x) == pytest.approx(frechet_distance(x, y), rel=1e-8)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_singular_covariance_more_dims_than_samples():
    x, y = gaussian(5, 20, 0), gaussian(6, 20, 1)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(x, y) > 0


def test_precision_recall():
    real = gaussian(100, 2, 0)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)
    half_far = torch.cat([real[:50], real[50:] + 100.0])
    precision, _ = precision_recall(real, half_far, k=3)
    assert precision == 0.5


def test_label_agreement_with_linear_classifier():
    classifier = nn.Linear(2, 2)
    with torch.no_grad():
        classifier.weight.copy_(torch.eye(2))
        classifier.bias.zero_()
    samples = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, 1, 1, 1])
    assert label_agreement(classifier, samples, labels) == 0.75
    assert label_agreement(classifier, samples, labels, batch_size=1) == 0.75
    assert classifier.training


def test_features_shape_batching_and_bad_layer():
    model = build_model("convnet", (1, 28, 28), 10, channels=[16, 32, 32])
    x = torch.randn(7, 1, 28, 28)
    feats = features(model, x, batch_size=3)
    assert feats.shape == (7, 32)
    assert torch.allclose(feats, features(model, x), atol=1e-6)
    assert model.training and not model.head[1]._forward_hooks
    with pytest.raises(DistillError, match="head.1"):
        features(model, x, layer="head.9")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mmd_rbf(torch.zeros(5, 2), torch.zeros(5, 3)), "2 features but y has 3"),
        (lambda: sliced_wasserstein(torch.zeros(1, 2), torch.zeros(5, 2)), "at least 2"),
        (lambda: frechet_distance(torch.tensor([[0.0], [float("nan")]]), torch.zeros(3, 1)), "NaN"),
        (lambda: mmd_rbf(torch.zeros(5, 1, 2), torch.zeros(5, 2)), r"flatten\(1\)"),
        (lambda: mmd_rbf([[0.0, 1.0]], torch.zeros(5, 2)), "numpy array"),
        (lambda: mmd_rbf(torch.zeros(5, 2), torch.zeros(5, 2), bandwidths=(1.0, 0.0)), "positive"),
        (lambda: sliced_wasserstein(torch.zeros(5, 2), torch.zeros(5, 2), projections=0), "projections"),
        (lambda: precision_recall(torch.zeros(3, 2), torch.zeros(5, 2), k=3), "lower k"),
        (lambda: label_agreement(nn.Linear(2, 2), torch.zeros(3, 2), torch.zeros(2).long()), "one label per"),
        (lambda: label_agreement(nn.Linear(2, 2), torch.zeros(3, 2), torch.zeros(3)), "integer"),
        (lambda: features(nn.Linear(2, 2), torch.zeros(3, 2), layer="", batch_size=0), "batch_size"),
    ],
)
def test_validation_errors(call, match):
    with pytest.raises(DistillError, match=match):
        call()
