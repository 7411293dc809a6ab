"""Registry of reference architectures."""

from distill.registry import Registry

MODELS: Registry = Registry("model")
