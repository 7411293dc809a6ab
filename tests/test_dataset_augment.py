import pytest
import torch

from distill.errors import ConfigError
from distill.tasks.dataset.augment import DSA, DSA_TRANSFORMS, DSADraw

ALL = "color_crop_cutout_flip_scale_rotate"


def _images(n, channels=3, size=16, seed=0):
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def test_reference_defaults():
    dsa = DSA()
    assert dsa.names == ("color", "crop", "cutout", "scale", "rotate") and "flip" not in dsa.names
    assert (dsa.scale, dsa.rotate_degrees, dsa.crop_ratio, dsa.cutout_ratio) == (1.2, 15.0, 0.125, 0.5)
    assert (dsa.brightness, dsa.saturation, dsa.contrast, dsa.flip_prob, dsa.mode) == (1.0, 2.0, 0.5, 0.5, "single")
    assert set(DSA_TRANSFORMS) == {"color", "crop", "cutout", "flip", "scale", "rotate"}


@pytest.mark.parametrize("mode", ["single", "all"])
def test_one_draw_transforms_batches_of_any_size_identically(mode):
    dsa = DSA(ALL, mode=mode)
    real, syn = _images(7, seed=1), _images(3, seed=2)
    generator = torch.Generator().manual_seed(3)
    for _ in range(8):  # in single mode, several draws cover several transforms
        draw = dsa.draw(generator)
        joint = dsa.apply(torch.cat([real, syn]), draw)
        assert torch.allclose(torch.cat([dsa.apply(real, draw), dsa.apply(syn, draw)]), joint, atol=1e-6)
        one = dsa.apply(real[:1], draw)
        assert torch.allclose(one, joint[:1], atol=1e-6)


def test_each_image_gets_the_same_geometric_transform():
    dsa = DSA("crop_cutout_flip_scale_rotate", mode="all")
    image = _images(1)
    batch = image.repeat(5, 1, 1, 1)
    out = dsa(batch, torch.Generator().manual_seed(0))
    assert torch.allclose(out, out[:1].expand_as(out), atol=1e-6)


def test_draws_are_reproducible_and_depend_on_the_seed():
    dsa = DSA(ALL, mode="all")
    a = dsa.draw(torch.Generator().manual_seed(5))
    b = dsa.draw(torch.Generator().manual_seed(5))
    c = dsa.draw(torch.Generator().manual_seed(6))
    assert a == b and a != c
    generator = torch.Generator().manual_seed(5)
    first, second = dsa.draw(generator), dsa.draw(generator)
    assert first == a and second != first


def test_draws_stay_in_the_reference_ranges():
    dsa = DSA(ALL, mode="all")
    generator = torch.Generator().manual_seed(0)
    draws = [dsa.draw(generator) for _ in range(200)]
    assert all(1 / 1.2 <= s <= 1.2 for d in draws for s in d.scale)
    assert all(abs(d.rotate_degrees) <= 15.0 for d in draws)
    assert all(-0.5 <= d.brightness <= 0.5 and 0 <= d.saturation <= 2.0 and 0.5 <= d.contrast <= 1.5 for d in draws)
    assert 60 < sum(d.flip for d in draws) < 140
    shifts = {dsa.crop_shift(d, 32, 32) for d in draws}
    assert {dy for dy, _ in shifts} == set(range(-4, 5))  # int(32 * 0.125 + 0.5) = 4, as in the reference


def test_single_mode_picks_one_transform_per_draw():
    dsa = DSA("color_crop_scale")
    generator = torch.Generator().manual_seed(0)
    picked = [dsa.draw(generator).ops for _ in range(60)]
    assert all(len(ops) == 1 for ops in picked)
    assert {ops[0] for ops in picked} == {"color", "crop", "scale"}
    assert DSA("none").draw(generator).ops == ()


def test_gradients_reach_the_images():
    dsa = DSA(ALL, mode="all")
    draw = dsa.draw(torch.Generator().manual_seed(1))
    images = _images(4).requires_grad_()
    (dsa.apply(images, draw) ** 2).sum().backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_and_dtype_are_kept(dtype):
    dsa = DSA(ALL, mode="all")
    images = torch.randn(3, 1, 12, 10, dtype=dtype)
    out = dsa(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == dtype


def test_identity_scale_and_rotation_leave_images_unchanged():
    dsa = DSA(ALL)
    images = _images(2)
    assert torch.allclose(dsa.apply(images, DSADraw(ops=("scale",), scale=(1.0, 1.0))), images, atol=1e-5)
    assert torch.allclose(dsa.apply(images, DSADraw(ops=("rotate",), rotate_degrees=0.0)), images, atol=1e-5)


def test_rotation_by_90_degrees_is_an_exact_quarter_turn():
    dsa = DSA(ALL)
    images = _images(2)
    turned = dsa.apply(images, DSADraw(ops=("rotate",), rotate_degrees=90.0))
    candidates = [torch.rot90(images, k, dims=(2, 3)) for k in (1, -1)]
    assert any(torch.allclose(turned, c, atol=1e-4) for c in candidates)


def test_scale_above_one_shrinks_the_content():
    dsa = DSA(ALL)
    images = torch.ones(1, 1, 16, 16)
    out = dsa.apply(images, DSADraw(ops=("scale",), scale=(2.0, 2.0)))
    assert out[..., 0, 0].item() == 0.0 and out[..., 8, 8].item() == pytest.approx(1.0)


def test_flip_mirrors_exactly():
    dsa = DSA(ALL)
    images = _images(2)
    assert torch.equal(dsa.apply(images, DSADraw(ops=("flip",), flip=True)), images.flip(3))
    assert torch.equal(dsa.apply(images, DSADraw(ops=("flip",), flip=False)), images)


def test_color_adds_brightness_then_scales_saturation_and_contrast():
    dsa = DSA(ALL)
    images = _images(2)
    only_brightness = DSADraw(ops=("color",), brightness=0.3)
    assert torch.allclose(dsa.apply(images, only_brightness), images + 0.3, atol=1e-6)
    grey = dsa.apply(images, DSADraw(ops=("color",), saturation=0.0))
    assert torch.allclose(grey, images.mean(dim=1, keepdim=True).expand_as(images), atol=1e-6)
    flat = dsa.apply(images, DSADraw(ops=("color",), contrast=0.0))
    assert torch.allclose(flat, images.mean(dim=(1, 2, 3), keepdim=True).expand_as(images), atol=1e-6)


def test_crop_translates_with_zero_padding():
    dsa = DSA(ALL)
    images = torch.arange(1.0, 65.0).view(1, 1, 8, 8)
    draw = DSADraw(ops=("crop",), crop=(0.99, 0.0))  # with limit 1 (8 * 0.125): the largest dy, the smallest dx
    assert dsa.crop_shift(draw, 8, 8) == (1, -1)
    out = dsa.apply(images, draw)
    assert torch.equal(out[0, 0, :-1, 1:], images[0, 0, 1:, :-1])
    assert (out[0, 0, -1] == 0).all() and (out[0, 0, :, 0] == 0).all()


def test_cutout_zeroes_one_square_of_the_drawn_size():
    dsa = DSA(ALL)
    images = torch.ones(2, 3, 16, 16)
    out = dsa.apply(images, DSADraw(ops=("cutout",), cutout=(0.5, 0.5)))
    assert dsa.cutout_box(DSADraw(ops=("cutout",)), 16, 16) == (4, 12, 4, 12)
    assert torch.equal(out[:, :, 4:12, 4:12], torch.zeros(2, 3, 8, 8))
    assert out.sum().item() == 2 * 3 * (256 - 64)
    corner = dsa.cutout_box(DSADraw(ops=("cutout",), cutout=(0.0, 0.999)), 16, 16)
    assert corner == (0, 4, 12, 16)  # a centre at the border: the square is clipped, as in the reference


def test_bad_strategy_and_parameters_are_refused():
    with pytest.raises(ConfigError, match="'rotate'"):
        DSA("color_rotat")
    with pytest.raises(ConfigError, match="Valid choices"):
        DSA("mixup")
    with pytest.raises(ConfigError, match="more than once"):
        DSA("crop_crop")
    with pytest.raises(ConfigError, match="scale"):
        DSA(scale=0.5)
    with pytest.raises(ConfigError, match="mode"):
        DSA(mode="multiple")
    with pytest.raises(ConfigError, match=r"\(B, C, H, W\)"):
        DSA()(torch.zeros(3, 8, 8), torch.Generator())
    with pytest.raises(ConfigError, match="crop"):
        DSADraw(ops=("crop",), crop=(1.0, 0.0))


def test_no_strategy_is_the_identity():
    images = _images(2)
    assert torch.equal(DSA("none")(images, torch.Generator().manual_seed(0)), images)
    assert DSA("").strategy == "none" and DSA("").draw(torch.Generator()).ops == ()
