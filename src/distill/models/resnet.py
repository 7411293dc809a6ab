"""CIFAR-style residual networks (He et al. 2016, "Deep residual learning", Sec. 4.2).

The 6n+2 family with basic blocks, as used by the CRD and mdistiller benchmarks:
a 3×3 stem and three stages of n blocks (the 2nd and 3rd stride 2). Widths are
stem/stage1/stage2/stage3 = 16/16/32/64, or 32/64/128/256 for the ``x4`` variants.
Global average pooling lets any channel count and image size through.

Module paths (taps), with (B, C, H, W) outputs for an H×W input:
``stem`` (w0, H, W), ``layer1`` (w1, H, W), ``layer2`` (w2, H/2, W/2),
``layer3`` (w3, H/4, W/4), ``head`` (pool, flatten, linear; ``head.1`` is the pooled
(B, w3) feature). Block i of stage K has ``layerK.i.conv1``, ``bn1``, ``relu1``,
``conv2``, ``bn2``, ``shortcut`` and ``relu2``; the input of ``relu2`` is the block's
pre-activation (the residual sum before the ReLU).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from distill.models.base import MODELS
from distill.models.convnet import IMAGES_ONLY, checked_shape


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers plus a shortcut (identity, or 1×1 conv-BN when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: ``widths`` = (stem, stage1, stage2, stage3)."""

    def __init__(
        self, in_channels: int, num_classes: int, depth: int, widths: Sequence[int]
    ) -> None:
        super().__init__()
        blocks = (depth - 2) // 6
        stem, *stages = widths
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU()
        )
        width = stem
        for i, out in enumerate(stages):
            stride = 1 if i == 0 else 2
            layers = [
                BasicBlock(width if j == 0 else out, out, stride if j == 0 else 1)
                for j in range(blocks)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
            width = out
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes)
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layer3(self.layer2(self.layer1(self.stem(x)))))


def _register(name: str, depth: int, widths: tuple[int, int, int, int]) -> None:
    def factory(input_shape: Sequence[int], num_classes: int) -> nn.Module:
        shape = checked_shape(name, input_shape, num_classes, {3: "(C, H, W)"}, IMAGES_ONLY)
        return CifarResNet(shape[0], num_classes, depth, widths)

    factory.__doc__ = f"CIFAR ResNet-{depth} (He et al. 2016), widths {'/'.join(map(str, widths))}."
    factory.__name__ = factory.__qualname__ = name
    MODELS.register(name)(factory)


#: name → (depth, widths), following mdistiller's ``mdistiller/models/cifar/resnet.py``.
RESNETS = {
    "resnet8": (8, (16, 16, 32, 64)),
    "resnet20": (20, (16, 16, 32, 64)),
    "resnet32": (32, (16, 16, 32, 64)),
    "resnet8x4": (8, (32, 64, 128, 256)),
    "resnet32x4": (32, (32, 64, 128, 256)),
}
for _name, (_depth, _widths) in RESNETS.items():
    _register(_name, _depth, _widths)
