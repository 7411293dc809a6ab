"""Score-distillation guidances, one file each; importing this package registers them all."""

from distill.tasks.score.methods import csd, dsd, ism, sds, ssd, vsd  # noqa: F401
from distill.tasks.score.methods.base import GUIDANCES, WEIGHTINGS, NoiseLevels

__all__ = ["GUIDANCES", "WEIGHTINGS", "NoiseLevels"]
