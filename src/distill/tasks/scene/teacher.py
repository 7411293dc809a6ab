"""The teacher of a scene run: a representation fitted to the training views (cached by content, so
the same recipe and views give it once), or the user's own file."""

from __future__ import annotations

from distill.engine.cache import array_hash, fit_or_load
from distill.engine.config import TRAIN_ONLY
from distill.errors import ConfigError
from distill.experiment.runner import Run
from distill.scenes import ReconstructionObjective, Representation, ViewSet, read_representation
from distill.tasks.scene.recipe import TeacherSpec


def teacher_identity(spec: TeacherSpec, views_identity: dict) -> dict:
    """What a fitted teacher is made of, for the cache key: its representation, the views, its training."""
    return {"kind": "scene-teacher", "representation": spec.representation.model_dump(mode="json"),
            "views": views_identity, "train": spec.train.model_dump(mode="json", exclude=TRAIN_ONLY)}


def obtain_teacher(spec: TeacherSpec, views: ViewSet, views_identity: dict, size: int,
                   run: Run) -> tuple[Representation, dict]:
    """The teacher and its facts (``source``; ``seconds`` it took to fit, ``cached`` when loaded from the cache)."""
    if spec.file is not None:
        teacher = read_representation(spec.file)
        if teacher.features:
            raise ConfigError(f"teacher.file {spec.file!r} holds a feature field; a scene run's teacher renders "
                              "colours (grey or RGB) to compare with the mesh's views.")
        fingerprint = array_hash(*(p.detach() for p in teacher.parameters()))
        return teacher.requires_grad_(False), {"source": spec.file, "fingerprint": fingerprint}
    teacher = spec.representation.build(channels=1, seed=spec.train.seed)
    objective = ReconstructionObjective(teacher, views, size)

    def fit() -> dict:
        result = run.train(objective, objective.dataset(), spec.train, "teacher")
        return {"seconds": result.seconds, "steps": result.steps}

    info, cached = fit_or_load(teacher, teacher_identity(spec, views_identity), fit)
    return teacher.requires_grad_(False), {"source": f"fitted to {len(views.images)} views", **info,
                                           "cached": cached}

