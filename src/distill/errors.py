"""User-facing errors: one clear message that names the problem and the fix."""

from __future__ import annotations

import difflib
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
