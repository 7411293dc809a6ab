"""Step distillation: many-step diffusion/flow samplers into 1–4 step generators.

A teacher is a :class:`~distill.diffusion.Denoiser` (a network, a noising process,
its parameterisation); methods in :data:`STEP_METHODS` turn it into few-step
students, and every generator answers ``sample(noise, y, steps)``.
"""

from distill.tasks.steps.methods import STEP_METHODS, StepsContext
from distill.tasks.steps.methods.consistency import ConsistencyObjective, consistency_function
from distill.tasks.steps.recipe import StepsRecipe

__all__ = ["STEP_METHODS", "ConsistencyObjective", "StepsContext", "StepsRecipe", "consistency_function"]
