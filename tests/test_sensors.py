"""Cross-sensor building blocks: the BasicMotions loader, Euclidean alignment and the MMD loss."""

from __future__ import annotations

import math
import re

import pytest
import torch

from distill.data import DATASETS, load_dataset
from distill.data import uea as uea_module
from distill.data.alignment import euclidean_alignment
from distill.data.basicmotions import CHANNEL_NAMES, CLASS_NAMES, INSTALL_HINT
from distill.errors import ConfigError, DistillError
from distill.losses import LOSSES
from distill.losses.mmd import MMDLoss

ACCELEROMETER = [0, 1, 2]


def mean_covariance(x: torch.Tensor) -> torch.Tensor:
    """``(1/N) Σ X Xᵀ / T`` of trials (N, C, T), in float64."""
    x = x.double()
    return torch.einsum("nct,ndt->cd", x, x) / (x.shape[0] * x.shape[2])


# --- BasicMotions -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def motions():
    return load_dataset("basicmotions")


@pytest.fixture(scope="module")
def accelerometer():
    return load_dataset("basicmotions", channels=ACCELEROMETER)


def test_registered_with_paper_docstrings():
    assert "basicmotions" in DATASETS
    assert MMDLoss is LOSSES.get("mmd") and MMDLoss.requires == "same_shape"
    assert re.search(r"\b20\d\d\b", LOSSES.describe("mmd"))
    assert re.search(r"\b20\d\d\b", euclidean_alignment.__doc__.splitlines()[0])


def test_shapes_dtypes_and_channel_names(motions, accelerometer):
    assert (len(motions.train), len(motions.test)) == (40, 40)
    assert motions.input_shape == (6, 100) and accelerometer.input_shape == (3, 100)
    assert motions.num_classes == 4 and motions.name == "basicmotions"
    assert motions.train.x.dtype == torch.float32 and motions.train.y.dtype == torch.int64
    assert tuple(accelerometer.test.x.shape) == (40, 3, 100)
    assert motions.extra["channel_names"] == list(CHANNEL_NAMES)
    assert accelerometer.extra["channel_names"] == ["acc_x", "acc_y", "acc_z"]
    assert motions.extra["class_names"] == sorted(CLASS_NAMES)


def test_labels_cover_four_balanced_classes(motions):
    for split in (motions.train, motions.test):
        assert split.y.bincount().tolist() == [10, 10, 10, 10]


def test_train_statistics_standardise_each_channel(motions, accelerometer):
    x = motions.train.x.double()
    torch.testing.assert_close(x.mean((0, 2)), torch.zeros(6, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std((0, 2), unbiased=False), torch.ones(6, dtype=torch.float64), atol=1e-5, rtol=0)
    # the test set uses the training statistics, so it is not exactly standardised
    assert not torch.allclose(motions.test.x.mean((0, 2)), torch.zeros(6), atol=1e-3)
    # a subset is the same channels, standardised the same way
    torch.testing.assert_close(accelerometer.train.x, motions.train.x[:, ACCELEROMETER])
    torch.testing.assert_close(accelerometer.test.x, motions.test.x[:, ACCELEROMETER])


def test_align_whitens_train_and_test_separately():
    aligned = load_dataset("basicmotions", channels=ACCELEROMETER, align=True)
    for split in (aligned.train, aligned.test):
        torch.testing.assert_close(mean_covariance(split.x), torch.eye(3, dtype=torch.float64), atol=1e-4, rtol=0)


@pytest.mark.parametrize("channels", [[6], [-1], [0, 7]])
def test_channel_out_of_range_names_valid_range(channels):
    with pytest.raises(DistillError, match=r"0\.\.5 \(acc_x.*gyro_z\)"):
        load_dataset("basicmotions", channels=channels)


@pytest.mark.parametrize("channels", [[], [0, 0], [True], "012", 3])
def test_malformed_channels_rejected(channels):
    with pytest.raises(DistillError, match="channels"):
        load_dataset("basicmotions", channels=channels)


def test_missing_aeon_names_the_install_command(monkeypatch):
    monkeypatch.setattr(uea_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DistillError, match=re.escape(INSTALL_HINT)):
        load_dataset("basicmotions")


def test_japanese_vowels_loads_offline_standardised():
    vowels = load_dataset("japanese_vowels")
    assert (len(vowels.train), len(vowels.test), vowels.input_shape, vowels.num_classes) == (270, 370, (12, 25), 9)
    x = torch.stack([vowels.train[i][0] for i in range(len(vowels.train))])
    assert torch.allclose(x.mean(dim=(0, 2)), torch.zeros(12), atol=1e-5)
    assert torch.allclose(x.std(dim=(0, 2), unbiased=False), torch.ones(12), atol=1e-4)
    assert sorted({int(vowels.train[i][1]) for i in range(len(vowels.train))}) == list(range(9))
    assert load_dataset("japanese_vowels", channels=[0, 5]).input_shape == (2, 25)


# --- Euclidean alignment ----------------------------------------------------------------


def trials(seed: int = 0) -> torch.Tensor:
    """24 correlated trials of 4 channels × 50 samples."""
    gen = torch.Generator().manual_seed(seed)
    mixing = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    return mixing @ torch.randn(24, 4, 50, generator=gen, dtype=torch.float64)


def test_alignment_makes_mean_covariance_identity():
    x = trials()
    assert not torch.allclose(mean_covariance(x), torch.eye(4, dtype=torch.float64), atol=0.1)
    aligned = euclidean_alignment(x.float())
    assert aligned.dtype == torch.float32 and aligned.shape == x.shape
    torch.testing.assert_close(mean_covariance(aligned), torch.eye(4, dtype=torch.float64), atol=1e-4, rtol=0)


def test_alignment_is_invariant_to_channel_mixing_up_to_rotation():
    x = trials()
    mixing = torch.randn(4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mixing += 3 * torch.eye(4, dtype=torch.float64)  # well conditioned, invertible
    plain, mixed = euclidean_alignment(x), euclidean_alignment(mixing @ x)
    eye = torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(mean_covariance(plain), eye, atol=1e-4, rtol=0)
    torch.testing.assert_close(mean_covariance(mixed), eye, atol=1e-4, rtol=0)
    # aligned(A·X) = Q·aligned(X) with Q orthogonal: pairwise trial inner products agree
    gram = lambda z: z.flatten(1) @ z.flatten(1).T  # noqa: E731
    torch.testing.assert_close(gram(mixed), gram(plain), atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("bad", [torch.zeros(4, 50), torch.zeros(2, 4, 50, 1), torch.zeros(0, 4, 50)])
def test_alignment_rejects_other_shapes(bad):
    with pytest.raises(DistillError, match=r"\(N, C, T\)"):
        euclidean_alignment(bad)


def test_alignment_rejects_integer_trials():
    with pytest.raises(DistillError, match="floating"):
        euclidean_alignment(torch.ones(2, 3, 4, dtype=torch.long))


# --- MMD --------------------------------------------------------------------------------


def gaussian(d2: float, sigma: float) -> float:
    return math.exp(-d2 / (2 * sigma**2))


def hand_mmd(s: list[float], t: list[float], sigma: float) -> float:
    """Biased squared MMD of 1-D samples with one Gaussian kernel of width ``sigma``."""
    mean_k = lambda a, b: sum(gaussian((x - y) ** 2, sigma) for x in a for y in b) / (len(a) * len(b))  # noqa: E731
    return mean_k(s, s) + mean_k(t, t) - 2 * mean_k(s, t)


S, T = [0.0, 1.0], [2.0, 4.0]


def column(values: list[float]) -> torch.Tensor:
    return torch.tensor(values).reshape(-1, 1)


def test_mmd_matches_hand_computation_with_absolute_bandwidth():
    got = MMDLoss(bandwidths=(1.5,), absolute=True)(column(S), column(T))
    assert got.item() == pytest.approx(hand_mmd(S, T, 1.5), rel=1e-5)


def test_mmd_bandwidth_is_a_multiple_of_the_lower_median_distance():
    # pooled {0, 1, 2, 4}: pairwise distances 1, 1, 2, 2, 3, 4, lower median 2
    got = MMDLoss(bandwidths=(0.5, 2.0))(column(S), column(T))
    assert got.item() == pytest.approx(hand_mmd(S, T, 1.0) + hand_mmd(S, T, 4.0), rel=1e-5)


def test_mmd_zero_for_identical_batches():
    feats = torch.randn(8, 3, 4)
    assert MMDLoss()(feats, feats.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_mmd_larger_for_shifted_distribution():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 8, generator=gen), torch.randn(64, 8, generator=gen)
    loss = MMDLoss()
    same, shifted = loss(a, b).item(), loss(a, b + 1.0).item()
    assert 0 <= same < shifted / 5


def test_mmd_median_is_detached():
    # the gradient equals that of fixed bandwidths at the median's value (lower median 2 here)
    grads = []
    for loss in (MMDLoss(bandwidths=(0.5, 2.0)), MMDLoss(bandwidths=(1.0, 4.0), absolute=True)):
        student = column(S).requires_grad_()
        loss(student, column(T)).backward()
        grads.append(student.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize(
    "student, teacher",
    [
        (torch.zeros(4, 5), torch.zeros(3, 5)),  # batch sizes differ
        (torch.zeros(4, 5), torch.zeros(4, 6)),  # feature sizes differ: project the student first
        (torch.zeros(4), torch.zeros(4)),  # no feature axis
    ],
)
def test_mmd_rejects_mismatched_or_flat_inputs(student, teacher):
    with pytest.raises(DistillError, match="mmd"):
        MMDLoss()(student, teacher)


@pytest.mark.parametrize("bandwidths", [(), (1.0, 0.0), (-2.0,)])
def test_mmd_rejects_bad_bandwidths(bandwidths):
    with pytest.raises(ConfigError, match="bandwidths"):
        MMDLoss(bandwidths=bandwidths)


def test_paired_views_feed_each_model_its_channels():
    from torch import nn

    from distill import Distiller
    from distill.data import load_dataset, student_views
    from distill.tasks.classification.objectives import DistillObjective

    splits = load_dataset("basicmotions")
    views = student_views(splits, [0, 1, 2], align=True)
    paired = views.paired_train.tensors
    assert views.student.input_shape == (3, 100) and paired["teacher_x"].shape == (40, 6, 100)
    assert paired["x"].shape == (40, 3, 100)
    aligned = views.student.train.x
    covariance = torch.einsum("nct,ndt->cd", aligned, aligned) / (aligned.shape[0] * aligned.shape[2])
    assert torch.allclose(covariance, torch.eye(3), atol=1e-3)  # the student's view is aligned on its own

    seen = {}

    class Probe(nn.Module):
        def __init__(self, name, channels):
            super().__init__()
            self.name, self.net = name, nn.Sequential(nn.Flatten(), nn.Linear(channels * 100, 4))

        def forward(self, x):
            seen[self.name] = x.shape[1]
            return self.net(x)

    distiller = Distiller(Probe("student", 3), Probe("teacher", 6), {("output", "output"): "kd"})
    objective = DistillObjective(distiller)
    batch = views.paired_train.__getitems__(list(range(8)))
    assert torch.isfinite(objective(batch)["loss"]) and seen == {"student": 3, "teacher": 6}
    assert torch.equal(batch["teacher_x"], splits.train.x[:8])


def test_bad_student_channels():
    from distill.data import load_dataset, student_views

    with pytest.raises(DistillError, match="0..5"):
        student_views(load_dataset("basicmotions"), [0, 7])


def test_osuleaf_loads_offline_as_one_standardised_channel():
    leaves = load_dataset("osuleaf")
    assert (len(leaves.train), len(leaves.test), leaves.input_shape, leaves.num_classes) == (200, 242, (1, 427), 6)
    x = torch.stack([leaves.train[i][0] for i in range(len(leaves.train))])
    assert torch.allclose(x.mean(), torch.zeros(()), atol=1e-5)
    assert torch.allclose(x.std(unbiased=False), torch.ones(()), atol=1e-4)
    assert sorted({int(leaves.train[i][1]) for i in range(len(leaves.train))}) == list(range(6))
