"""Score distillation (SDS and its successors): a pretrained diffusion prior distilled into a
parametric object — particles, images, 3-D scenes — through the prior's score on renderings.

Work in progress (issue 9): the SDS and VSD guidances, the exact prior and 2-D particles
on the engine exist as a library; the recipe, runner, renderer and report of the family
are not built yet.
"""

from distill.tasks.score.guidance import GUIDANCES
from distill.tasks.score.particles import ParticlesObjective, mode_statistics

__all__ = ["GUIDANCES", "ParticlesObjective", "mode_statistics"]
