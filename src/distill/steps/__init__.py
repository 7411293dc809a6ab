"""Step distillation: many-step diffusion/flow samplers into 1–4 step generators.

A teacher is a :class:`Denoiser` (a network, a noising :class:`Process`, its
parameterisation); methods in :data:`STEP_METHODS` turn it into few-step
generators, and every generator answers ``sample(noise, y, steps)``.
"""

from distill.steps.denoiser import Denoiser
from distill.steps.methods import STEP_METHODS, StepsContext
from distill.steps.nets import build_denoiser
from distill.steps.process import build_process
from distill.steps.sampling import OdeGenerator, RenoisingGenerator
from distill.steps.teacher import DenoisingObjective
from distill.steps.toys import sample_toy

__all__ = ["STEP_METHODS", "Denoiser", "DenoisingObjective", "OdeGenerator", "RenoisingGenerator", "StepsContext",
           "build_denoiser", "build_process", "sample_toy"]
