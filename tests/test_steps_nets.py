"""Denoiser networks: shapes, class/null/step conditioning, option checks, gradient flow."""

from __future__ import annotations

import pytest
import torch

from distill.diffusion.nets import (
    DENOISERS,
    ConditionEmbedding,
    PointSetNet,
    TimeMLP,
    UNet,
    build_denoiser,
    sinusoidal_embedding,
)
from distill.errors import DistillError

#: (name, input_shape) pairs every test below covers; small widths keep them fast
CASES = [
    ("mlp", (2,)),
    ("mlp", (1, 8, 8)),
    ("unet", (1, 8, 8)),
    ("unet", (1, 28, 28)),
    ("pointnet", (12, 3)),
]
SMALL = {"mlp": {"hidden": 32, "depth": 2}, "unet": {"channels": (8, 16), "groups": 4},
         "pointnet": {"hidden": 16, "depth": 2}}
IDS = [f"{name}-{'x'.join(map(str, shape))}" for name, shape in CASES]


def _net(name, shape, **kwargs):
    torch.manual_seed(0)
    return build_denoiser(name, shape, **SMALL[name], **kwargs)


def _randomise_zeros(net: torch.nn.Module) -> None:
    """Give zero-initialised weights (output conv, step MLP) small random values."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))


def test_registry_and_build_types():
    assert DENOISERS.names() == ["mlp", "pointnet", "unet"]
    assert isinstance(build_denoiser("mlp", (2,)), TimeMLP)
    assert isinstance(build_denoiser("pointnet", (5, 3)), PointSetNet)
    assert isinstance(build_denoiser("unet", (1, 28, 28)), UNet)


def test_sinusoidal_embedding():
    t = torch.tensor([0.0, 0.5, 1.0])
    emb = sinusoidal_embedding(t, 8)
    assert emb.shape == (3, 8)
    assert torch.equal(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))  # cos 0, sin 0
    assert torch.allclose(emb[1, 0], torch.cos(torch.tensor(500.0)))  # 1000·t at frequency 1
    assert torch.allclose(emb.square()[:, :4] + emb.square()[:, 4:], torch.ones(3, 4))


@pytest.mark.parametrize("name,shape", CASES, ids=IDS)
def test_output_shape_and_time_dependence(name, shape):
    net = _net(name, shape)
    _randomise_zeros(net)
    x = torch.randn(5, *shape)
    out = net(x, torch.rand(5))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.equal(net(x, 0.3), net(x, torch.full((5,), 0.3)))  # a float t is per-row
    assert not torch.allclose(net(x, 0.1), net(x, 0.9))


def test_unet_output_is_zero_at_init():
    net = build_denoiser("unet", (1, 8, 8))
    assert not net(torch.randn(3, 1, 8, 8), 0.5).any()


@pytest.mark.parametrize("name,shape", CASES, ids=IDS)
def test_class_conditioning_and_null_class(name, shape):
    net = _net(name, shape, num_classes=3)
    _randomise_zeros(net)
    with torch.no_grad():
        net.embed.label.weight.normal_(0, 1.0)
    x, t = torch.randn(4, *shape), torch.rand(4)
    y0, y1 = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    assert not torch.allclose(net(x, t, y0), net(x, t, y1))
    null = torch.full((4,), 3)
    assert torch.equal(net(x, t), net(x, t, null))  # y=None is the null class (index 3)
    assert torch.equal(net(x, t, torch.full((4,), -1)), net(x, t, null))  # -1 is null too
    mixed = torch.tensor([0, -1, 2, -1])
    assert torch.equal(net(x, t, mixed), net(x, t, torch.tensor([0, 3, 2, 3])))
    assert not torch.allclose(net(x, t), net(x, t, y0))


def test_labels_refused_by_unconditional_net_and_wrong_length():
    net = _net("mlp", (2,))
    with pytest.raises(DistillError, match="num_classes"):
        net(torch.randn(2, 2), 0.5, torch.zeros(2, dtype=torch.long))
    cond = _net("mlp", (2,), num_classes=2)
    with pytest.raises(DistillError, match="one label per row"):
        cond(torch.randn(2, 2), 0.5, torch.zeros(3, dtype=torch.long))
    with pytest.raises(DistillError, match="one per row"):
        cond(torch.randn(2, 2), torch.rand(3))


@pytest.mark.parametrize("name,shape", CASES, ids=IDS)
def test_step_conditioned_copy_computes_the_same_function(name, shape):
    plain = _net(name, shape, num_classes=2)
    _randomise_zeros(plain)  # a "trained" teacher: non-zero everywhere
    torch.manual_seed(5)
    stepped = build_denoiser(name, shape, num_classes=2, step_conditioned=True, **SMALL[name])
    missing, unexpected = stepped.load_state_dict(plain.state_dict(), strict=False)
    assert missing and all(key.startswith("embed.step.") for key in missing) and not unexpected
    x, t, y = torch.randn(3, *shape), torch.rand(3), torch.tensor([0, 1, -1])
    reference = plain(x, t, y)
    for d in (None, 0.0, 0.25, 1.0, torch.rand(3)):
        assert torch.equal(stepped(x, t, y, d), reference)
    # once the step MLP's last layer is trained, d matters
    with torch.no_grad():
        stepped.embed.step[-1].weight.normal_(0, 1.0)
    assert not torch.allclose(stepped(x, t, y, 0.0), stepped(x, t, y, 1.0))
    assert torch.equal(stepped(x, t, y), stepped(x, t, y, 0.0))  # d=None means d=0


def test_step_size_refused_without_step_conditioning():
    net = _net("unet", (1, 8, 8))
    with pytest.raises(DistillError, match="step_conditioned"):
        net(torch.randn(2, 1, 8, 8), 0.5, d=0.5)


@pytest.mark.parametrize("name,shape", CASES, ids=IDS)
def test_every_parameter_gets_a_gradient(name, shape):
    net = _net(name, shape, num_classes=2, step_conditioned=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, target = torch.randn(6, *shape), torch.randn(6, *shape)
    y, t, d = torch.tensor([0, 1, -1, 0, 1, -1]), torch.rand(6), torch.rand(6)
    before = net(x, t, y, d)
    loss = (before - target).square().mean()
    opt.zero_grad()
    loss.backward()
    for key, p in net.named_parameters():
        assert p.grad is not None, key
        assert torch.isfinite(p.grad).all(), key
    # the output layer always has a real gradient, so one step changes the output
    out_layer = net.out[-1]
    assert out_layer.weight.grad.abs().sum() > 0
    opt.step()
    assert (net(x, t, y, d) - target).square().mean() < loss
    # with every weight non-zero, every parameter gets a non-zero gradient
    _randomise_zeros(net)
    net.zero_grad()
    (net(x, t, y, d) - target).square().mean().backward()
    for key, p in net.named_parameters():
        if key.startswith("embed.label."):
            continue  # only the used rows get gradient; checked below
        assert p.grad.abs().sum() > 0, key
    assert (net.embed.label.weight.grad.abs().sum(dim=1) > 0).all()  # classes 0, 1 and null


def test_timemlp_rejects_wrong_width():
    net = _net("mlp", (2,))
    with pytest.raises(DistillError, match="2 features"):
        net(torch.randn(4, 3), 0.5)


def test_bad_input_shapes_and_options():
    with pytest.raises(DistillError, match="divisible by 4"):
        build_denoiser("unet", (1, 10, 10))
    with pytest.raises(DistillError, match=r"\(C, H, W\)"):
        build_denoiser("unet", (2,))
    with pytest.raises(DistillError, match="divisible by 8"):
        build_denoiser("unet", (1, 28, 28), channels=(8, 16, 32), groups=4)
    with pytest.raises(DistillError, match="input_shape"):
        build_denoiser("mlp", (0, 3))
    with pytest.raises(DistillError, match="accepted: depth, hidden"):
        build_denoiser("mlp", (2,), width=3)
    with pytest.raises(DistillError, match="accepted: channels, groups"):
        build_denoiser("unet", (1, 8, 8), hidden=3)
    with pytest.raises(DistillError, match="groups"):
        build_denoiser("unet", (1, 8, 8), channels=(12, 16))
    with pytest.raises(DistillError, match="depth"):
        build_denoiser("mlp", (2,), depth=0)
    with pytest.raises(DistillError, match="num_classes"):
        build_denoiser("mlp", (2,), num_classes=-1)
    with pytest.raises(DistillError, match="Did you mean 'unet'"):
        build_denoiser("unte", (1, 8, 8))
    net = build_denoiser("unet", (1, 8, 8))
    with pytest.raises(DistillError, match="divisible by 4"):
        net(torch.randn(2, 1, 6, 6), 0.5)


def test_condition_embedding_shape():
    emb = ConditionEmbedding(16, num_classes=4, step_conditioned=True)
    like = torch.zeros(3, 7)
    assert emb(0.5, like).shape == (3, 16)
    assert emb(torch.rand(3), like, torch.tensor([0, 1, -1]), torch.rand(3)).shape == (3, 16)
