"""Score distillation (SDS and its successors): a pretrained diffusion prior distilled into a
parametric object — particles, images, 3-D scenes — through the prior's score on renderings.

``guidance/`` holds one registered module per guidance (SDS, VSD, ISM, SSD, CSD, DSD); ``render/`` the
plain-PyTorch cameras, Gaussian-splat and voxel renderers and mesh tools; ``particles`` and ``scenes`` the
engine objectives; ``views`` the mesh renders a view prior learns from and its exact form; ``run`` and
``scene_run`` the recipe runners; ``task`` registers the family.
"""

from distill.tasks.score.guidance import GUIDANCES
from distill.tasks.score.metrics import mode_statistics
from distill.tasks.score.particles import ParticlesObjective

__all__ = ["GUIDANCES", "ParticlesObjective", "mode_statistics"]
