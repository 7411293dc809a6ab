"""The networks dataset-distillation papers condense and evaluate with: ConvNet, an MLP and a small ResNet.

Registered as ``convnet_dd``, ``mlp_dd`` and ``resnet_dd``: the same ideas as ``convnet``,
``mlp`` and ``resnet*`` but the field's variants (Zhao et al.'s DatasetCondensation
``utils.get_network``), which differ where it matters for a synthetic set. All
normalisation is instance normalisation (``GroupNorm`` with one group per channel,
affine), so a sample's output never depends on the other samples of its batch: a batch of
all classes gives the same features as one batch per class, and a handful of synthetic
images needs no batch statistics.

Module paths (taps): ``features`` is the ``(B, D)`` feature vector just before the final
linear layer (what distribution matching compares and herding selects on), ``classifier``
the logits; ``forward(x) = classifier(features(x))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from distill.errors import ConfigError, check_count
from distill.models.base import MODELS


def instance_norm(channels: int) -> nn.GroupNorm:
    """Instance normalisation with a learned per-channel scale and shift (the field's ``instancenorm``)."""
    return nn.GroupNorm(channels, channels, affine=True)


class FeatureClassifier(nn.Module):
    """A feature extractor ending in a ``(B, D)`` vector, followed by one linear layer."""

    features: nn.Sequential
    classifier: nn.Linear
    embedding_dim: int

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class ConvNet(FeatureClassifier):
    """``depth`` × [3×3 conv (padding 1) → instance norm → ReLU → 2×2 average pool], flatten, a linear layer.

    The ConvNet of DC, DSA, DM and MTT (width 128, depth 3 in the papers). Each pooling halves
    the side (rounding down), so the image needs at least ``2**depth`` pixels a side.
    """

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, width: int = 32, depth: int = 3) -> None:
        super().__init__()
        channels, height, side = image_shape
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Conv2d(channels if i == 0 else width, width, kernel_size=3, padding=1),
                       instance_norm(width), nn.ReLU(), nn.AvgPool2d(kernel_size=2, stride=2)]
            height, side = height // 2, side // 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.embedding_dim = width * height * side
        self.classifier = nn.Linear(self.embedding_dim, num_classes)


class MLP(FeatureClassifier):
    """Flatten → ``depth - 1`` hidden layers of ``4 × width`` units with ReLU → linear.

    At the defaults (width 32, depth 3) this is the reference MLP: two hidden layers of 128.
    """

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, width: int = 32, depth: int = 3) -> None:
        super().__init__()
        hidden, size = 4 * width, image_shape[0] * image_shape[1] * image_shape[2]
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(depth - 1):
            layers += [nn.Linear(size if i == 0 else hidden, hidden), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.embedding_dim = hidden if depth > 1 else size
        self.classifier = nn.Linear(self.embedding_dim, num_classes)


class BasicBlock(nn.Module):
    """Two 3×3 convs with instance norm and a residual connection (projected when the shape changes)."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, kernel_size=3, stride=stride, padding=1, bias=False),
            instance_norm(channels_out), nn.ReLU(),
            nn.Conv2d(channels_out, channels_out, kernel_size=3, padding=1, bias=False),
            instance_norm(channels_out))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            projection = nn.Conv2d(channels_in, channels_out, kernel_size=1, stride=stride, bias=False)
            self.shortcut = nn.Sequential(projection, instance_norm(channels_out))

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet(FeatureClassifier):
    """A small ResNet (He et al. 2016) with instance norm: 3×3 stem → ``depth`` basic blocks (widths
    ``width·2**i``, the first at full resolution, each later one halving the side) → global average
    pool → linear.

    Sized for 8×8 to 32×32 images; depth 3 at width 32 gives 128 features.
    """

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, width: int = 32, depth: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(image_shape[0], width, kernel_size=3, padding=1, bias=False),
                                   instance_norm(width), nn.ReLU()]
        channels = width
        for i in range(depth):
            layers.append(BasicBlock(channels, width * 2 ** i, stride=1 if i == 0 else 2))
            channels = width * 2 ** i
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.embedding_dim = channels
        self.classifier = nn.Linear(channels, num_classes)


def _checked(name: str, input_shape: Sequence[int], num_classes: int, width: int, depth: int,
             halvings: int) -> tuple[int, int, int]:
    """``input_shape`` as ``(C, H, W)``, refusing a non-positive size or images too small for ``halvings``."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"model {name!r} takes images: input_shape must be (channels, height, width) with "
                          f"positive sizes; got {tuple(input_shape)}.")
    for field, value in (("num_classes", num_classes), ("width", width), ("depth", depth)):
        check_count(f"model {name!r}: {field}", value)
    smallest = min(shape[1:])
    if smallest < 2 ** halvings:
        deepest = smallest.bit_length() - 1 + (name == "resnet_dd")  # the largest depth these images allow
        fix = f"lower depth to at most {deepest}" if deepest >= 1 else "use larger images or 'mlp_dd'"
        raise ConfigError(f"model {name!r} with depth {depth} halves the image side {halvings} times, so it needs "
                          f"images of at least {2 ** halvings}×{2 ** halvings}; got {shape[1]}×{shape[2]}. "
                          f"Fix: {fix}.")
    return shape


@MODELS.register("convnet_dd")
def convnet_dd(input_shape: Sequence[int], num_classes: int, width: int = 32, depth: int = 3) -> nn.Module:
    """Dataset distillation's ConvNet: depth × (conv 3×3, instance norm, ReLU, avg-pool 2×2), linear (DC/DM/MTT)."""
    return ConvNet(_checked("convnet_dd", input_shape, num_classes, width, depth, depth), num_classes, width, depth)


@MODELS.register("mlp_dd")
def mlp_dd(input_shape: Sequence[int], num_classes: int, width: int = 32, depth: int = 3) -> nn.Module:
    """Dataset distillation's MLP: depth - 1 hidden ReLU layers of 4 × width units, linear."""
    return MLP(_checked("mlp_dd", input_shape, num_classes, width, depth, 0), num_classes, width, depth)


@MODELS.register("resnet_dd")
def resnet_dd(input_shape: Sequence[int], num_classes: int, width: int = 32, depth: int = 3) -> nn.Module:
    """Dataset distillation's small ResNet with instance norm: stem, depth basic blocks, global pool, linear."""
    return ResNet(_checked("resnet_dd", input_shape, num_classes, width, depth, depth - 1), num_classes, width, depth)
