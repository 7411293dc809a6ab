"""The model zoo: shapes, named module paths, parameter counts, determinism, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distill.errors import DistillError
from distill.models import MODELS, build_model

MNIST1D, DIGITS, MNIST = (1, 40), (1, 8, 8), (1, 28, 28)
IMAGE_ONLY = ["resnet8", "resnet20", "resnet32", "resnet8x4", "resnet32x4", "vit_tiny"]

#: every model we ship, with the input shapes it must accept
SHAPES = {
    "mlp": [MNIST1D, (40,), DIGITS, MNIST],
    "convnet": [MNIST1D, (40,), DIGITS, MNIST],
    **{name: [DIGITS, MNIST] for name in IMAGE_ONLY},
}

#: module path -> output shape without the batch dimension, for MNIST-1D and MNIST inputs
TAPS = {
    ("mlp", MNIST1D): {
        "fc1": (100,),
        "relu1": (100,),
        "fc2": (100,),
        "relu2": (100,),
        "head": (10,),
    },
    ("convnet", MNIST1D): {
        "conv1": (25, 19),
        "conv2": (25, 10),
        "conv3": (25, 5),
        "conv3.0": (25, 5),
        "head.0": (125,),
    },
    ("convnet", MNIST): {
        "conv1": (32, 14, 14),
        "conv2": (64, 7, 7),
        "conv3": (128, 7, 7),
        "head": (10,),
    },
    ("resnet8", MNIST): {
        "stem": (16, 28, 28),
        "layer1": (16, 28, 28),
        "layer2": (32, 14, 14),
        "layer3": (64, 7, 7),
        "layer3.0.bn2": (64, 7, 7),
        "layer3.0.shortcut": (64, 7, 7),
        "head.1": (64,),
    },
    ("resnet32x4", MNIST): {
        "stem": (32, 28, 28),
        "layer1.4.relu2": (64, 28, 28),
        "layer2": (128, 14, 14),
        "layer3": (256, 7, 7),
    },
    ("vit_tiny", MNIST): {
        "patch_embed": (64, 7, 7),
        "blocks.3": (50, 64),
        "blocks.0.attn": (50, 64),
        "norm": (50, 64),
    },
    ("vit_tiny", DIGITS): {"patch_embed": (64, 4, 4), "blocks.3": (17, 64)},
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_shipped_model_is_registered():
    assert set(SHAPES) <= set(MODELS.names())


@pytest.mark.parametrize("name,shape", [(n, s) for n, shapes in SHAPES.items() for s in shapes])
def test_forward_gives_logits(name, shape):
    model = build_model(name, shape, num_classes=7)
    assert model(torch.randn(3, *shape)).shape == (3, 7)


@pytest.mark.parametrize("name,shape", list(TAPS))
def test_named_module_paths_and_shapes(name, shape):
    model = build_model(name, shape, 10).eval()
    seen = {}
    for path in TAPS[name, shape]:
        hook = lambda module, args, out, path=path: seen.__setitem__(path, tuple(out.shape[1:]))  # noqa: E731
        model.get_submodule(path).register_forward_hook(hook)
    model(torch.randn(2, *shape))
    assert seen == TAPS[name, shape]


def test_mlp_parameter_count_matches_mnist1d_baseline():
    assert (
        n_params(build_model("mlp", MNIST1D, 10))
        == 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
        == 15_210
    )
    assert n_params(build_model("mlp", MNIST1D, 10, hidden=[20])) == 40 * 20 + 20 + 20 * 10 + 10


def test_convnet_1d_is_the_mnist1d_cnn_baseline():
    # conv 1→25 (k5), 25→25 (k3), 25→25 (k3), linear 25·5→10, as in the mnist1d repository
    expected = (25 * 5 + 25) + 2 * (25 * 25 * 3 + 25) + (125 * 10 + 10)
    assert n_params(build_model("convnet", MNIST1D, 10)) == expected == 5_210
    assert n_params(build_model("convnet", MNIST1D, 10, channels=8)) < expected


@pytest.mark.parametrize(
    "name,millions",
    [
        ("resnet8", 0.08),
        ("resnet20", 0.28),
        ("resnet32", 0.47),
        ("resnet8x4", 1.23),
        ("resnet32x4", 7.43),
    ],
)
def test_resnet_sizes_match_published_cifar100_counts(name, millions):
    # parameter counts reported for CIFAR-100 in Tian et al. 2020 (CRD), Table 1
    assert round(n_params(build_model(name, (3, 32, 32), 100)) / 1e6, 2) == millions


@pytest.mark.parametrize("name", list(SHAPES))
def test_same_seed_gives_same_model(name):
    shape = SHAPES[name][0]
    x = torch.randn(2, *shape)
    outputs = []
    for _ in range(2):
        torch.manual_seed(0)
        outputs.append(build_model(name, shape, 10).eval()(x))
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize(
    "name,steps", [("mlp", 40), ("convnet", 40), ("resnet8", 40), ("vit_tiny", 80)]
)
def test_small_model_overfits_32_digits(digits, name, steps):
    x, y = digits.train.x[:32], digits.train.y[:32]
    torch.manual_seed(0)
    model = build_model(name, digits.input_shape, digits.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.1 < 2.0 < losses[0]


def test_unknown_model_lists_valid_names():
    with pytest.raises(
        DistillError, match=r"unknown model 'resnet9'.*Valid choices: .*resnet8x4.*vit_tiny"
    ):
        build_model("resnet9", DIGITS, 10)


@pytest.mark.parametrize(
    "name,shape,kwargs,message",
    [
        ("resnet8", MNIST1D, {}, r"\(C, H, W\).*for 1-D signals use 'mlp' or 'convnet'"),
        ("vit_tiny", (40,), {}, r"\(C, H, W\)"),
        ("convnet", (1, 2, 3, 4), {}, r"\(L,\) or \(C, L\) or \(C, H, W\)"),
        ("mlp", (0, 40), {}, "positive sizes"),
        ("mlp", 40, {}, "positive sizes"),
        ("mlp", MNIST1D, {"hidden": 100}, "list of positive layer widths"),
        ("convnet", MNIST1D, {"channels": (8, 8)}, "three of them"),
        ("convnet", (1, 2), {}, "length 2 are too short"),
        ("convnet", (1, 3, 3), {}, "at least 4×4"),
        ("vit_tiny", (1, 30, 30), {}, "not divisible by patch_size=4"),
        ("vit_tiny", MNIST, {"dim": 30}, "divisible by heads"),
        ("mlp", MNIST1D, {"width": 3}, "unexpected keyword argument 'width'"),
    ],
)
def test_bad_arguments_raise_clear_errors(name, shape, kwargs, message):
    with pytest.raises(DistillError, match=message):
        build_model(name, shape, 10, **kwargs)


def test_bad_num_classes():
    with pytest.raises(DistillError, match="num_classes >= 1"):
        build_model("mlp", MNIST1D, 0)
