"""Score-distillation recipes (``task: score``): a prior, a guidance, the object it is distilled into."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, model_validator

from distill.diffusion.recipe import DiffusionModelSpec, GenDataSpec
from distill.diffusion.sources import is_zoo
from distill.engine.config import StrictModel, TrainConfig
from distill.engine.placement import placement_refusal
from distill.errors import ConfigError
from distill.experiment.recipe import RegisteredSpec
from distill.metrics.classifier import ClassifierSpec
from distill.scenes.recipe import ViewsSpec


class GuidanceSpec(RegisteredSpec):
    """A registered guidance (``sds``, ``vsd``, ``ism``, ``ssd``, ``csd``, ``dsd``) and its options."""

    @classmethod
    def registry(cls):
        from distill.tasks.score.methods import GUIDANCES

        return GUIDANCES


class PointsSpec(StrictModel):
    """Particles in the prior's own data space — 2-D points or images — started from N(0, init_std²).
    With a class-conditional prior, particle i is guided towards class ``i mod num_classes``."""

    #: the registered object kind that runs it (``distill.tasks.score.objects``)
    object_kind: ClassVar[str] = "points"
    kind: Literal["points"] = "points"
    count: PositiveInt = 1024
    init_std: float = Field(1.0, gt=0)


class SceneSpec(StrictModel):
    """A 3-D object seen only through renders: ``gaussians`` (``count`` 3-D Gaussians started uniform in
    a ball of ``init_radius``) or ``voxels`` (a ``resolution``³ grid), grey (1 channel) or RGB."""

    object_kind: ClassVar[str] = "scene"
    kind: Literal["gaussians", "voxels"]
    count: PositiveInt = 256
    resolution: PositiveInt = 32
    init_radius: float = Field(0.5, gt=0)
    channels: Literal[1, 3] = 1
    background: float = Field(0.0, ge=0, le=1)


class PriorSpec(DiffusionModelSpec):
    """The prior: ``trained`` (a diffusion / flow model, the fields of a steps teacher: distill trains it on
    the data or views, or it is given — a diffusers folder or your module with ``weights``) or ``exact`` (the closed-form ideal denoiser of the training points or views —
    no training; for views each render is weighted by its camera's angle to the query's, a Gaussian
    kernel ``kappa_degrees`` wide)."""

    kind: Literal["trained", "exact"] = "trained"
    kappa_degrees: float = Field(15.0, gt=0)


class ScoreEvalSpec(StrictModel):
    """How the result is scored: against as many held-out points as there are particles, beside the
    same metrics of an independent real draw (the noise floor)."""

    seed: int = 1234
    classifier: ClassifierSpec = Field(default_factory=ClassifierSpec)


class ScoreRecipe(StrictModel):
    """One score-distillation experiment: ``distill run recipes/score/<name>.yaml``."""

    name: str
    task: Literal["score"]
    data: GenDataSpec | None = None
    views: ViewsSpec | None = None
    prior: PriorSpec = Field(default_factory=PriorSpec)
    guidance: GuidanceSpec
    object: PointsSpec | SceneSpec = Field(default_factory=PointsSpec, discriminator="kind")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(steps=2000, batch_size=256, lr=0.01))
    evaluate: ScoreEvalSpec = Field(default_factory=ScoreEvalSpec)

    @model_validator(mode="after")
    def _placement(self) -> ScoreRecipe:
        refusal = placement_refusal(self.train, "score", "sharding or caching its frozen prior is not set up yet")
        if refusal:
            raise ValueError(refusal)
        return self

    @model_validator(mode="after")
    def _consistent(self) -> ScoreRecipe:
        scene = self.object.object_kind == "scene"
        if scene and (self.views is None or self.data is not None):
            raise ConfigError(f"a {self.object.kind} object is distilled from renders of meshes: give a 'views' "
                              "section (meshes, count, size, ...) and no 'data' section.")
        if not scene and (self.data is None or self.views is not None):
            raise ConfigError("points are distilled from a data set: give a 'data' section (e.g. {name: 8gaussians}) "
                              "and no 'views' section (views are for gaussians / voxels objects).")
        guidance = self.guidance.build()
        if self.prior.kind == "exact" and hasattr(guidance, "fake_network"):
            raise ConfigError(f"guidance {self.guidance.name!r} fits an online copy of the prior's network, and the "
                              "exact prior has none; use prior.kind: trained, or another guidance.")
        if not is_zoo(self.prior.model) and (scene or self.prior.kind == "exact"):
            why = ("a 3-D object needs a view-conditioned prior (distill's mlp / unet)" if scene
                   else "the exact prior has no network; set prior.kind: trained")
            raise ConfigError(f"prior.model {self.prior.model!r} serves a trained prior of points (particles or "
                              f"images); {why}.")
        if scene and self.prior.conditional:
            raise ConfigError("a view prior is conditioned on the camera, not on classes; set prior.conditional: false.")
        groups = {"scene" if scene else "particles"} | ({"fake"} if hasattr(guidance, "fake_network") else set())
        unknown = sorted(set(self.train.groups) - groups)
        if unknown:
            raise ConfigError(f"train.groups names {unknown}, but guidance {self.guidance.name!r} trains the "
                              f"parameter groups {sorted(groups)}; use those names.")
        if self.train.steps is None:
            raise ConfigError("score distillation counts train.steps (particles have no epochs); set train.steps.")
        if not scene and self.train.drop_last and self.train.batch_size > self.object.count:
            raise ConfigError(f"train.batch_size ({self.train.batch_size}) exceeds object.count ({self.object.count}), "
                              "the particles each step's batch is drawn from; lower train.batch_size, raise "
                              "object.count, or set train.drop_last: false.")
        return self
