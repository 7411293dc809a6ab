"""Registry of reference architectures, and freezing a trained model for use as a teacher."""

from torch import nn

from distill.registry import Registry

MODELS: Registry = Registry("model")


def frozen(module: nn.Module) -> nn.Module:
    """``module`` in eval mode with gradients off."""
    return module.eval().requires_grad_(False)
