"""Model compression: teacher network → smaller or different student (KD, features, relations, cross-sensor)."""

from distill.tasks.classification.objectives import DistillObjective, SupervisedObjective
from distill.tasks.classification.recipe import ClassificationRecipe

__all__ = ["ClassificationRecipe", "DistillObjective", "SupervisedObjective"]
