"""User-facing errors: one clear message that names the problem and the fix; the argument checks that raise them.

The checks (integers, counts, positive numbers, fractions) are shared by every layer and family. Each
returns the checked value, or raises a :class:`ConfigError` whose message starts with the argument's
``name`` (pass the caller's context in it, e.g. ``"mtt option syn_steps"``) and ends with the bad value.
A bool is never a number here: ``True`` is refused where an integer or a float is asked for.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Iterable


class DistillError(ValueError):
    """Raised for any input a user can get wrong; the message says how to fix it."""


class ConfigError(DistillError):
    """A recipe or argument has a wrong field, type or value."""


class CheckpointError(DistillError):
    """A checkpoint is missing, corrupt, or was written by something else."""


class NonFiniteLossError(DistillError):
    """The training loss became NaN or infinite."""


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The up-to-``n`` entries of ``choices`` that look most like ``name``."""
    choices = list(choices)
    found = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not found:
        found = [c for c in choices if name and (name in c or c in name)][:n]
    return found


def unknown_name_message(kind: str, name: str, choices: Iterable[str]) -> str:
    """Message for an unknown ``kind`` called ``name``, listing valid choices."""
    choices = sorted(choices)
    hint = closest(name, choices)
    did_you_mean = f" Did you mean {', '.join(repr(h) for h in hint)}?" if hint else ""
    return f"unknown {kind} {name!r}.{did_you_mean} Valid choices: {', '.join(choices)}."


def is_int(value: object, least: int = 1) -> bool:
    """Whether ``value`` is an ``int`` (not a bool) ≥ ``least``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def positive_ints(values: Iterable[object]) -> bool:
    """Whether every one of ``values`` is an ``int`` (not a bool) ≥ 1 (for checks of several sizes at once)."""
    return all(is_int(value) for value in values)


def check_int(name: str, value: object, least: int = 1) -> int:
    """``value`` if it is an integer (not a bool) ≥ ``least``: "``name`` must be an integer >= ``least``"."""
    if not is_int(value, least):
        raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}.")
    return value


def check_count(name: str, value: object) -> int:
    """``value`` if it is a positive integer (not a bool): a size, a number of steps or samples."""
    if not is_int(value):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
    return value


def check_positive(name: str, value: object) -> float:
    """``value`` as a float if it is a real number (not a bool) > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}.")
    return float(value)


def check_fraction(name: str, value: object, meaning: str = "", *, open_left: bool = False,
                   open_right: bool = False) -> float:
    """``value`` as a float if it lies in [0, 1] (an end is left out with ``open_left`` / ``open_right``);
    the message says what the fraction means when ``meaning`` is given."""
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    low_ok = number and (value > 0.0 if open_left else value >= 0.0)
    high_ok = number and (value < 1.0 if open_right else value <= 1.0)
    if not (low_ok and high_ok):
        interval = f"{'(' if open_left else '['}0, 1{')' if open_right else ']'}"
        said = f" ({meaning})" if meaning else ""
        raise ConfigError(f"{name} must lie in {interval}{said}, got {value!r}.")
    return float(value)
