"""Diffusion and flow models shared by step distillation and score distillation.

Noising processes (:mod:`process`), the :class:`Denoiser` that reads a network as a
prediction of (x0, ε), ODE and re-noising samplers, the denoiser networks, the
denoising / flow-matching objective that trains a teacher or a prior, and the
score-distillation surrogate ``0.5·‖x − sg(x − g)‖²``.
"""

from distill.diffusion.denoiser import Denoiser
from distill.diffusion.nets import DENOISERS, build_denoiser
from distill.diffusion.objective import DenoisingObjective
from distill.diffusion.process import PROCESSES, build_process
from distill.diffusion.sampling import OdeGenerator, RenoisingGenerator, ode_step
from distill.diffusion.surrogate import score_distillation_loss

__all__ = ["DENOISERS", "PROCESSES", "Denoiser", "DenoisingObjective", "OdeGenerator", "RenoisingGenerator",
           "build_denoiser", "build_process", "ode_step", "score_distillation_loss"]
