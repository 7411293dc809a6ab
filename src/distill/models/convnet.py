"""Small convolutional networks: the MNIST-1D CNN baseline and a 3-stage image CNN.

Module paths (taps): ``conv1``, ``conv2``, ``conv3`` (each a stage ending in its
ReLU, or max-pooling for the first two image stages; ``convK.0`` is the bare
convolution) and ``head``, whose ``head.0`` (1-D: flatten) or ``head.1`` (images:
pool and flatten) is the feature the final linear layer sees.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

from torch import Tensor, nn

from distill.errors import DistillError, positive_ints
from distill.models.base import MODELS

#: ``checked_shape`` hint for image-only models.
IMAGES_ONLY = (
    " It takes images only (a gray image is (1, H, W)); for 1-D signals use 'mlp' or 'convnet'."
)


def checked_shape(
    model: str,
    input_shape: Sequence[int],
    num_classes: int,
    layouts: dict[int, str] | None = None,
    hint: str = "",
) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints, in one of ``layouts`` (ndims → description)."""
    try:
        shape = tuple(operator.index(d) for d in input_shape)
    except TypeError:
        shape = ()
    if not shape or min(shape) < 1 or (layouts is not None and len(shape) not in layouts):
        accepted = " or ".join(layouts.values()) if layouts else "(...)"
        raise DistillError(
            f"model {model!r} takes input_shape {accepted} of positive sizes, without the batch "
            f"dimension; got {input_shape!r}.{hint}"
        )
    if not positive_ints([num_classes]):
        raise DistillError(f"model {model!r} needs num_classes >= 1, got {num_classes!r}.")
    return shape


class ConvNet1d(nn.Module):
    """The MNIST-1D CNN baseline (Greydanus 2020, "Scaling down deep learning", ~94 % test).

    Three stride-2 convolutions (kernel 5, then 3 and 3, padding 1) with ReLU,
    flattened into a linear head. On MNIST-1D, (1, 40) → (25, 19) → (25, 10) → (25, 5).
    """

    def __init__(
        self, in_channels: int, length: int, num_classes: int, channels: tuple[int, int, int]
    ) -> None:
        super().__init__()
        if length < 3:
            raise DistillError(
                f"convnet: signals of length {length} are too short for three stride-2 "
                "convolutions; use at least 3."
            )
        self.in_channels = in_channels
        widths = (in_channels, *channels)
        for i, kernel in enumerate((5, 3, 3)):
            conv = nn.Conv1d(widths[i], widths[i + 1], kernel, stride=2, padding=1)
            self.add_module(f"conv{i + 1}", nn.Sequential(conv, nn.ReLU()))
            length = (length + 2 - kernel) // 2 + 1
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels[-1] * length, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(len(x), self.in_channels, -1)  # (B, L) → (B, 1, L)
        return self.head(self.conv3(self.conv2(self.conv1(x))))


class ConvNet2d(nn.Module):
    """A small VGG-style image CNN (Simonyan & Zisserman 2015) with batch norm (Ioffe & Szegedy).

    Three 3×3 conv-BN-ReLU stages, 2×2 max-pooling after the first two, then
    global average pooling and a linear head: (1, 28, 28) → conv3 (C3, 7, 7).
    """

    def __init__(self, in_channels: int, num_classes: int, channels: tuple[int, int, int]) -> None:
        super().__init__()
        widths = (in_channels, *channels)
        for i in range(3):
            layers = [
                nn.Conv2d(widths[i], widths[i + 1], 3, padding=1, bias=False),
                nn.BatchNorm2d(widths[i + 1]),
                nn.ReLU(),
            ]
            if i < 2:
                layers.append(nn.MaxPool2d(2))
            self.add_module(f"conv{i + 1}", nn.Sequential(*layers))
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.conv3(self.conv2(self.conv1(x))))


def _three_widths(channels: int | Sequence[int]) -> tuple[int, int, int]:
    widths = (channels,) * 3 if isinstance(channels, int) else tuple(channels)
    if len(widths) != 3 or not positive_ints(widths):
        raise DistillError(
            f"convnet: channels must be a positive int or three of them, got {channels!r}."
        )
    return widths


@MODELS.register("convnet")
def convnet(
    input_shape: Sequence[int], num_classes: int, channels: int | Sequence[int] | None = None
) -> nn.Module:
    """Small CNN: the MNIST-1D baseline for (L,) or (C, L) input, a conv-BN net for (C, H, W)."""
    shape = checked_shape(
        "convnet", input_shape, num_classes, {1: "(L,)", 2: "(C, L)", 3: "(C, H, W)"}
    )
    if len(shape) == 3:
        if min(shape[1:]) < 4:
            raise DistillError(
                f"convnet: images must be at least 4×4 for two 2×2 poolings, got {shape}."
            )
        return ConvNet2d(
            shape[0], num_classes, _three_widths((32, 64, 128) if channels is None else channels)
        )
    in_channels, length = (1, *shape) if len(shape) == 1 else shape
    return ConvNet1d(
        in_channels, length, num_classes, _three_widths(25 if channels is None else channels)
    )
