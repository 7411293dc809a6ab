import pytest
import torch
from torch import nn

from distill.adapters import build_adapters
from distill.errors import DistillError


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


@pytest.mark.parametrize(
    "student, teacher, s_layout, t_layout",
    [
        ((4, 16), (4, 32), "channels_first", "channels_first"),  # vectors: linear
        ((4, 8, 7, 7), (4, 16, 14, 14), "channels_first", "channels_first"),  # conv 1x1 + upsample
        ((4, 8, 20), (4, 25, 5), "channels_first", "channels_first"),  # 1-D map: conv1d + pool
        ((4, 8, 6, 6), (4, 32), "channels_first", "channels_first"),  # map -> pooled vector
        ((4, 17, 64), (4, 32, 4, 4), "tokens", "channels_first"),  # ViT tokens (+CLS) -> map
        ((4, 32, 7, 7), (4, 50, 64), "channels_first", "tokens"),  # map -> tokens
        ((4, 100), (4, 25, 5), "channels_first", "channels_first"),  # MLP hidden -> 1-D CNN hint
    ],
)
def test_same_shape_projects_student_onto_teacher(student, teacher, s_layout, t_layout):
    s_adapter, t_adapter = build_adapters(student, teacher, "same_shape", "pair", s_layout, t_layout)
    out = s_adapter(torch.randn(student))
    assert out.shape == teacher
    assert t_adapter(torch.randn(teacher)).shape == teacher
    assert _has_params(s_adapter) and not _has_params(t_adapter)


def test_equal_shapes_need_nothing():
    s, t = build_adapters((4, 10), (4, 10), "identical", "pair")
    assert isinstance(s, nn.Identity) and isinstance(t, nn.Identity)


def test_same_spatial_resizes_without_parameters():
    s, t = build_adapters((4, 8, 28, 28), (4, 64, 7, 7), "same_spatial", "pair")
    assert s(torch.randn(4, 8, 28, 28)).shape == (4, 8, 7, 7)
    assert not _has_params(s)


def test_same_spatial_tokens_become_maps():
    s, t = build_adapters((4, 17, 64), (4, 32, 4, 4), "same_spatial", "pair", "tokens", "channels_first")
    assert s(torch.randn(4, 17, 64)).shape == (4, 64, 4, 4)


def test_identical_refuses_projection_naming_both_shapes():
    with pytest.raises(DistillError) as err:
        build_adapters((4, 10), (4, 100), "identical", "pair (output → output, loss 'kd')")
    assert "(4, 10)" in str(err.value) and "(4, 100)" in str(err.value) and "kd" in str(err.value)


def test_vector_regresses_a_flattened_map():
    s, _ = build_adapters((4, 16), (4, 8, 5, 5), "same_shape", "pair")
    assert s(torch.randn(4, 16)).shape == (4, 8, 5, 5)


def test_same_spatial_needs_maps():
    with pytest.raises(DistillError, match="feature maps"):
        build_adapters((4, 16), (4, 8, 5, 5), "same_spatial", "pair")


def test_batch_mismatch():
    with pytest.raises(DistillError, match="batch sizes differ"):
        build_adapters((3, 16), (4, 16), "same_batch", "pair")


def test_orthogonal_projector_stays_orthogonal():
    s, _ = build_adapters((4, 16), (4, 8), "same_shape", "pair", projector="orthogonal")
    weight = s[0].linear.weight
    assert torch.allclose(weight @ weight.T, torch.eye(8), atol=1e-5)
    maps, _ = build_adapters((4, 8, 5, 5), (4, 16, 5, 5), "same_shape", "pair", projector="orthogonal")
    assert maps(torch.randn(4, 8, 5, 5)).shape == (4, 16, 5, 5)


@pytest.mark.parametrize("requires", ["identical", "same_shape"])
def test_layout_is_ignored_for_vectors(requires):
    # A (B, 10) tensor from an nn.Linear is inferred "tokens"; layouts only mean something for rank 3.
    s, t = build_adapters((4, 10), (4, 10), requires, "pair", "tokens", "channels_first")
    assert isinstance(s, nn.Identity) and isinstance(t, nn.Identity)


@pytest.mark.parametrize(
    "shape, layout",
    [
        ((4, 10), "channels_first"),
        ((4, 8, 5, 5), "channels_first"),
        ((4, 6, 8), "tokens"),
        ((4, 8, 20), "channels_first"),
    ],
)
def test_project_builds_a_trainable_projector_on_equal_shapes(shape, layout):
    s, t = build_adapters(shape, shape, "same_shape", "pair", layout, layout, project=True)
    assert _has_params(s) and not _has_params(t)
    assert s(torch.randn(shape)).shape == shape


def test_same_positions_projects_channels_and_never_resizes():
    s, t = build_adapters((4, 16, 128), (4, 64, 128), "same_positions", "pair")
    assert _has_params(s) and not _has_params(t)
    assert s(torch.randn(4, 16, 128)).shape == (4, 64, 128)
    same_width, _ = build_adapters((4, 64, 128), (4, 64, 128), "same_positions", "pair")
    assert not _has_params(same_width)
    forced, _ = build_adapters((4, 64, 128), (4, 64, 128), "same_positions", "pair", project=True)
    assert _has_params(forced)
    with pytest.raises(DistillError, match="same positions"):
        build_adapters((4, 16, 64), (4, 64, 128), "same_positions", "pair")  # a subsampled point set
    with pytest.raises(DistillError, match="same positions"):
        build_adapters((4, 16), (4, 64, 128), "same_positions", "pair")  # a pooled vector


def test_same_positions_gives_tokens_to_the_loss_channels_first():
    s, t = build_adapters((4, 128, 16), (4, 128, 64), "same_positions", "pair", "tokens", "tokens")
    assert s(torch.randn(4, 128, 16)).shape == (4, 64, 128)
    assert t(torch.randn(4, 128, 64)).shape == (4, 64, 128)
