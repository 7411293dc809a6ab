"""Score distillation (SDS and its successors): a pretrained diffusion prior distilled into a
parametric object — particles, images, 3-D scenes — through the prior's score on renderings.

``methods/`` holds one registered module per guidance (SDS, VSD, ISM, SSD, CSD, DSD); ``objectives`` the
engine objectives (particles, scenes); ``objects/`` one registered module per kind of object (points,
scene) and ``run`` the one runner over them; ``view_prior`` the exact view-conditioned prior; ``task``
registers the family. Cameras, renderers, meshes, views and
3-D metrics are the shared :mod:`distill.scenes` layer.
"""

from distill.tasks.score.methods import GUIDANCES
from distill.tasks.score.metrics import mode_statistics
from distill.tasks.score.objectives import ParticlesObjective
from distill.tasks.score.view_prior import ViewConditionedExactDenoiser

__all__ = ["GUIDANCES", "ParticlesObjective", "ViewConditionedExactDenoiser", "mode_statistics"]
