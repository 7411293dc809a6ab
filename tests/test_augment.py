import pytest
import torch

from distill.augment import Jitter, Mixup, build_augment
from distill.errors import ConfigError


def test_jitter_shifts_by_at_most_two_pixels_and_keeps_content():
    torch.manual_seed(0)
    x = torch.zeros(50, 1, 28, 28)
    x[:, 0, 14, 14] = 1.0
    shifted = Jitter(2)(x).x
    positions = shifted[:, 0].flatten(1).argmax(1)
    rows, cols = positions // 28, positions % 28
    assert ((rows - 14).abs() <= 2).all() and ((cols - 14).abs() <= 2).all()
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10  # many different shifts
    assert torch.equal(shifted.sum(dim=(1, 2, 3)), torch.ones(50))


def test_mixup_blends_pairs_with_per_sample_lambda():
    torch.manual_seed(0)
    x = torch.randn(16, 3)
    mixed = Mixup(0.4)(x)
    expected = mixed.lam[:, None] * x + (1 - mixed.lam[:, None]) * x[mixed.partner]
    assert torch.allclose(mixed.x, expected) and ((mixed.lam >= 0) & (mixed.lam <= 1)).all()


def test_unknown_augment():
    with pytest.raises(ConfigError, match="'jitter'"):
        build_augment("cutmix")
