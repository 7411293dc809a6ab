"""3-D representations distilled into one another: a teacher scene converted into another representation
(Progressive Volume Distillation) or compacted into fewer Gaussians (LightGaussian, Distilled-3DGS), and a
2-D network's features lifted onto a teacher's Gaussians (Feature 3DGS).

``methods/`` holds one registered module per method (``convert``, ``compact``, ``lift``); ``objectives`` PVD's
point-wise and rendered objective; ``features`` the feature field and its objective; ``segmenter`` the
2-D part segmenter a ``lift`` run trains; ``teacher`` the teacher (fitted to a mesh's views and cached, or a
file); ``context`` what every row shares and how it is scored; ``library`` the same methods as a few
lines around your own representation; ``task`` registers the family. Cameras, renderers, meshes, views
and 3-D metrics are the shared :mod:`distill.scenes` layer.
"""

from distill.tasks.scene.features import FeatureField, FeatureLiftObjective
from distill.tasks.scene.library import compact, convert, lift
from distill.tasks.scene.methods import SCENE_METHODS
from distill.tasks.scene.methods.compact import prune_by_importance
from distill.tasks.scene.objectives import ConversionObjective, conversion_targets, pointwise_losses
from distill.tasks.scene.recipe import SceneRecipe
from distill.tasks.scene.segmenter import PartSegmenter

__all__ = ["SCENE_METHODS", "ConversionObjective", "FeatureField", "FeatureLiftObjective", "PartSegmenter", "SceneRecipe",
           "compact", "conversion_targets", "convert", "lift", "pointwise_losses", "prune_by_importance"]
