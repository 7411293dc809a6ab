"""Step-distillation methods, one file each; importing this package registers them all."""

from distill.tasks.steps.methods import consistency, dmd, guidance, ict, progressive, reflow, shortcut  # noqa: F401
from distill.tasks.steps.methods.base import STEP_METHODS, StepsContext

__all__ = ["STEP_METHODS", "StepsContext"]
