"""The kinds of object score distillation makes, one file each; importing this package registers them all."""

from distill.tasks.score.objects import points, scene  # noqa: F401
from distill.tasks.score.objects.base import OBJECT_KINDS, ObjectKind

__all__ = ["OBJECT_KINDS", "ObjectKind"]
