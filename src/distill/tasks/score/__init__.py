"""Score distillation (SDS and its successors): a pretrained diffusion prior distilled into a
parametric object — particles, images, 3-D scenes — through the prior's score on renderings.

``guidance/`` holds one registered module per guidance (SDS, VSD, ISM, SSD, CSD, DSD); ``particles`` and
``scenes`` the engine objectives; ``view_prior`` the exact view-conditioned prior; ``run`` and
``scene_run`` the recipe runners; ``task`` registers the family. Cameras, renderers, meshes, views and
3-D metrics are the shared :mod:`distill.scenes` layer.
"""

from distill.tasks.score.guidance import GUIDANCES
from distill.tasks.score.metrics import mode_statistics
from distill.tasks.score.particles import ParticlesObjective
from distill.tasks.score.view_prior import ViewConditionedExactDenoiser

__all__ = ["GUIDANCES", "ParticlesObjective", "ViewConditionedExactDenoiser", "mode_statistics"]
