"""Argument checks shared by the dataset-distillation modules."""

from __future__ import annotations

from distill.errors import ConfigError


def check_int(name: str, value, least: int = 1) -> int:
    """``value`` if it is an integer (not a bool) ≥ ``least``, else a ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{name} must be an integer >= {least}; got {value!r}.")
    return value


def check_positive(name: str, value) -> float:
    """``value`` if it is a number > 0, else a ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a positive number; got {value!r}.")
    return float(value)
