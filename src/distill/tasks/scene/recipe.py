"""3-D representation recipes (``task: scene``): the mesh whose views make the teacher, the teacher (fitted
by the run, or a file), the method (``convert``, ``compact``, ``lift``), the student and the training budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt, model_validator

from distill.engine.config import StrictModel, TrainConfig
from distill.engine.placement import placement_refusal
from distill.errors import ConfigError
from distill.experiment.recipe import RegisteredSpec, check_registered
from distill.scenes.files import SCENE_FILES
from distill.scenes.recipe import ViewsSpec
from distill.scenes.representation import REPRESENTATIONS

#: options the family sets itself: the channels come from the views (grey renders)
FAMILY_OPTIONS = ("channels", "features", "generator")


class RepresentationSpec(StrictModel):
    """A representation by its ``REPRESENTATIONS`` name (``gaussians``, ``voxels``, ``field``) and options
    (``gaussians``: ``n``, ``radius``, ``scale``, ``opacity``; ``voxels``: ``resolution``, ``bound``,
    ``init_density``; ``field``: ``frequencies``, ``width``, ``depth``, ``bound``, ``init_density``), built
    grey (one channel, as the views are) and seeded by the training seed."""

    kind: str
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _registered(self) -> RepresentationSpec:
        given = sorted(set(self.options) & set(FAMILY_OPTIONS))
        if given:
            raise ConfigError(f"representation options {given} are set by the run (grey, as the views are; "
                              "seeded by train.seed); remove them.")
        check_registered(REPRESENTATIONS, self.kind, {**self.options, "channels": 1})
        return self

    def build(self, channels: int, seed: int):
        """A fresh representation with ``channels`` channels, its random start drawn from ``seed``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return REPRESENTATIONS.build(self.kind, channels=channels, **self.options)


class TeacherSpec(StrictModel):
    """The teacher: a representation fitted by the run to the training views (``kind`` and ``options``,
    ``train``; cached by content, so a second run loads it) or a ``file`` a representation's ``save``
    wrote (``.ply`` Gaussians, ``.npz`` voxel grid or field), which must show the mesh in ``views``."""

    kind: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    file: str | None = None
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(steps=300, batch_size=4, lr=0.05))

    @model_validator(mode="after")
    def _one_source(self) -> TeacherSpec:
        if (self.kind is None) == (self.file is None):
            raise ConfigError("teacher: give either kind (a representation fitted to the views, e.g. voxels) or "
                              "file (a .ply / .npz a representation's save() wrote), not both or neither.")
        if self.file is not None:
            if self.options:
                raise ConfigError("teacher.options build a fitted teacher; a teacher file carries its own.")
            if Path(self.file).suffix.lower() not in SCENE_FILES:
                raise ConfigError(f"teacher.file {self.file!r} is of no representation file type; distill reads "
                                  f"{', '.join(SCENE_FILES)} ({'; '.join(SCENE_FILES.values())}).")
        else:
            RepresentationSpec(kind=self.kind, options=self.options)
        return self

    @property
    def representation(self) -> RepresentationSpec | None:
        """The fitted teacher's representation (None for a file)."""
        return None if self.kind is None else RepresentationSpec(kind=self.kind, options=self.options)


class SceneMethodSpec(RegisteredSpec):
    """A registered scene method (``convert``, ``compact``, ``lift``) and its options."""

    @classmethod
    def registry(cls):
        from distill.tasks.scene.methods import SCENE_METHODS

        return SCENE_METHODS


class SceneEvalSpec(StrictModel):
    """How the rows are scored: held-out PSNR / SSIM against the mesh and the teacher, Chamfer, render time
    (the best of ``render_repeats`` timed renders of the held-out views), and the wall time at which the
    eval curve (every ``train.eval_every`` steps) first reaches the teacher's PSNR less ``margin_db``."""

    margin_db: float = Field(0.5, ge=0)
    render_repeats: PositiveInt = 3


class SceneRecipe(StrictModel):
    """One 3-D representation experiment: ``distill run recipes/scene/<name>.yaml``."""

    name: str
    task: Literal["scene"]
    views: ViewsSpec = Field(default_factory=lambda: ViewsSpec(count=40, held_out=8))
    teacher: TeacherSpec
    method: SceneMethodSpec
    student: RepresentationSpec | None = None
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(steps=300, batch_size=4, lr=0.01, eval_every=25))
    evaluate: SceneEvalSpec = Field(default_factory=SceneEvalSpec)

    @model_validator(mode="after")
    def _placement(self) -> SceneRecipe:
        refusal = placement_refusal(self.train, "scene", "its objectives read the teacher scene's parameters directly "
                                    "(ray samples), not through a forward pass FSDP2 gathers")
        if refusal:
            raise ValueError(refusal)
        return self

    @model_validator(mode="after")
    def _consistent(self) -> SceneRecipe:
        if len(self.views.meshes) != 1:
            raise ConfigError(f"views.meshes names {len(self.views.meshes)} meshes; a scene run's teacher shows one "
                              "object: name one mesh (run the recipe once per mesh).")
        if self.train.steps is None:
            raise ConfigError("a scene run counts train.steps (views have no epochs); set train.steps.")
        if self.teacher.kind is not None and self.teacher.train.steps is None:
            raise ConfigError("teacher.train counts steps (views have no epochs); set teacher.train.steps.")
        unknown = sorted(set(self.train.groups) - {"scene"})
        if unknown:
            raise ConfigError(f"train.groups names {unknown}; every student trains one parameter group, 'scene'.")
        self.method.build().check_recipe(self)
        return self
