"""distill: knowledge distillation in all its forms, on one engine.

Library use::

    from distill import Distiller
    distiller = Distiller(student, teacher, {("output", "output"): "kd"})
    logits = distiller(x)
    losses = distiller.compute_losses(target=y)   # {"kd": ..., "total": ...}
    losses["total"].backward()
"""

from distill.distiller import Distiller, Match
from distill.errors import CheckpointError, ConfigError, DistillError, NonFiniteLossError

__version__ = "0.1.0"

__all__ = ["CheckpointError", "ConfigError", "DistillError", "Distiller", "Match", "NonFiniteLossError", "__version__"]
