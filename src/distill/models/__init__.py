"""Reference architectures by name: MLP, ConvNet, CIFAR ResNets, a tiny ViT, dataset distillation's
instance-norm ConvNet, MLP and ResNet (``*_dd``), and the point-cloud PointNet and DGCNN."""

from collections.abc import Sequence

from torch import nn

from distill.models import convnet, dd, mlp, points, resnet, vit  # noqa: F401  (each registers its models)
from distill.models.base import MODELS


def build_model(name: str, input_shape: Sequence[int], num_classes: int, **kwargs) -> nn.Module:
    """The model registered as ``name`` for ``input_shape`` (no batch dim) and ``num_classes``."""
    return MODELS.build(name, input_shape=input_shape, num_classes=num_classes, **kwargs)


__all__ = ["MODELS", "build_model"]
