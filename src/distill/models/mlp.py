"""Multilayer perceptron, the MNIST-1D MLP baseline's shape (Greydanus 2020).

Module paths (taps): ``flatten``, ``fc1``/``relu1``, ``fc2``/``relu2``, … one pair
per hidden width (``fcK`` is the pre-activation, ``reluK`` the activation), and ``head``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from distill.errors import DistillError, positive_ints
from distill.models.base import MODELS
from distill.models.convnet import checked_shape


class MLP(nn.Sequential):
    """Flatten, then Linear + ReLU per hidden width, then a linear head (Rumelhart et al. 1986).

    ``dropout`` after each hidden layer and ``input_dropout`` on the input, as in
    Hinton et al. 2012 ("Improving neural networks by preventing co-adaptation of
    feature detectors"); paths ``drop0`` (input) and ``dropK`` exist only when used.
    """

    def __init__(
        self, in_features: int, num_classes: int, hidden: Sequence[int], dropout: float = 0.0, input_dropout: float = 0.0
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        if input_dropout:
            layers["drop0"] = nn.Dropout(input_dropout)
        width = in_features
        for i, out in enumerate(hidden, start=1):
            layers[f"fc{i}"] = nn.Linear(width, out)
            layers[f"relu{i}"] = nn.ReLU()
            if dropout:
                layers[f"drop{i}"] = nn.Dropout(dropout)
            width = out
        layers["head"] = nn.Linear(width, num_classes)
        super().__init__(layers)


@MODELS.register("mlp")
def mlp(
    input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (100, 100),
    dropout: float = 0.0, input_dropout: float = 0.0,
) -> nn.Module:
    """Multilayer perceptron on the flattened input; hidden=(100, 100) as for MNIST-1D."""
    shape = checked_shape("mlp", input_shape, num_classes)
    if not isinstance(hidden, Sequence) or isinstance(hidden, str) or not positive_ints(hidden):
        raise DistillError(
            f"mlp: hidden must be a list of positive layer widths, e.g. [100, 100]; got {hidden!r}."
        )
    for name, rate in (("dropout", dropout), ("input_dropout", input_dropout)):
        if not 0.0 <= rate < 1.0:
            raise DistillError(f"mlp: {name} must be in [0, 1), got {rate!r}.")
    return MLP(math.prod(shape), num_classes, tuple(hidden), dropout, input_dropout)
