"""Scene methods, one file each; importing this package registers them all."""

from distill.tasks.scene.methods import compact, convert, lift  # noqa: F401
from distill.tasks.scene.methods.base import SCENE_METHODS, MethodResult, SceneMethod

__all__ = ["SCENE_METHODS", "MethodResult", "SceneMethod"]
