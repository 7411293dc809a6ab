"""Diffusion and flow models shared by step distillation and score distillation.

Noising processes (:mod:`process`), the :class:`Denoiser` that reads a network as a
prediction of (x0, ε), classifier-free guidance (:mod:`cfg`), ODE and re-noising samplers, the
denoiser networks, the denoising / flow-matching loss that trains a teacher, a prior or a fake
score, the recipe sections of a diffusion model (:mod:`recipe`), where its network comes from
(:mod:`sources`: distill's, the user's module, a diffusers folder read by :mod:`diffusers_folder`) and
its cached training (:mod:`teacher`), students of a diffusers teacher written back as diffusers folders
(:mod:`diffusers_student`), and the score-distillation surrogate ``0.5·‖x − sg(x − g)‖²``.
"""

from distill.diffusion.cfg import NULL_CLASS
from distill.diffusion.denoiser import Denoiser
from distill.diffusion.nets import DENOISERS, build_denoiser
from distill.diffusion.objective import DenoisingObjective, denoising_loss
from distill.diffusion.process import PROCESSES, build_process
from distill.diffusion.sampling import OdeGenerator, RenoisingGenerator, ode_step
from distill.diffusion.surrogate import score_distillation_loss

__all__ = ["DENOISERS", "NULL_CLASS", "PROCESSES", "Denoiser", "DenoisingObjective", "OdeGenerator",
           "RenoisingGenerator", "build_denoiser", "build_process", "denoising_loss", "ode_step",
           "score_distillation_loss"]
