"""distill: knowledge distillation in all its forms, on one engine.

Library use::

    from distill import Distiller
    distiller = Distiller(student, teacher, {("output", "output"): "kd"})
    logits = distiller(x)
    losses = distiller.compute_losses(target=y)   # {"kd": ..., "total": ...}
    losses["total"].backward()
"""

from typing import TYPE_CHECKING

from distill.errors import CheckpointError, ConfigError, DistillError, NonFiniteLossError

if TYPE_CHECKING:
    from distill.distiller import Distiller, Match
    from distill.experiment.launch import run
    from distill.experiment.tune import tune

__version__ = "0.1.0"

__all__ = ["CheckpointError", "ConfigError", "DistillError", "Distiller", "Match", "NonFiniteLossError", "__version__",
           "run", "tune"]


def __getattr__(name: str):
    """``Distiller``, ``Match``, ``run`` and ``tune`` load torch on first use, so ``distill --help`` starts without
    it."""
    if name in ("Distiller", "Match"):
        from distill import distiller

        return getattr(distiller, name)
    if name == "run":
        from distill.experiment.launch import run

        return run
    if name == "tune":
        from distill.experiment.tune import tune

        return tune
    raise AttributeError(f"module 'distill' has no attribute {name!r}")
