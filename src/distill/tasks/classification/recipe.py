"""Model-compression recipes (``task: classification``, the default): teacher, student, pairs, budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from distill.engine.config import StrictModel, TrainConfig
from distill.errors import DistillError, unknown_name_message
from distill.experiment.recipe import check_registered
from distill.experiment.tune import parse_budget
from distill.taps import parse_tap
from distill.tasks.classification.methods import LOSSES
from distill.tasks.classification.space import METHODS, knob_names


class DataSpec(StrictModel):
    """Which dataset and its loader options (e.g. ``transfer_size`` for MNIST-1D)."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    validation: int = Field(0, ge=0, description="if > 0, evaluate on this many held-out training samples (tuning)")
    student_channels: list[int] | None = Field(None, description="cross-sensor: the student sees only these channels")
    student_align: bool = Field(False, description="Euclidean-align the student's channel subset on its own")


class ModelSpec(StrictModel):
    """A network by name (see ``distill.models.source``) with its options."""

    model: str = Field(description="a zoo name (convnet, mlp, resnet8, ...), an import path 'my_models:build_net', "
                                   "'torchvision:resnet18', 'timm:resnet18' or 'hf:path/to/folder'")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the model's builder")


class TeacherSpec(ModelSpec):
    """The teacher: given (``weights``, or a Hugging Face folder's own) or trained by the run (cached by
    content hash)."""

    weights: Path | None = Field(None, description="trained weights: a .safetensors file or a .pt state dict; "
                                                   "the teacher is then given, not trained")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(steps=4000))
    augment: Literal["none", "mixup", "jitter"] = "none"


class MultiTeacherSpec(StrictModel):
    """Several teachers combined into one (``distill.multi_teacher.MultiTeacher``)."""

    teachers: list[TeacherSpec] = Field(min_length=2)
    weights: list[float] | None = None
    combine: Literal["logits", "probs"] = "logits"


class PairSpec(StrictModel):
    """One matched pair: student tap, teacher tap, loss name, weight and loss options."""

    student: str | list[str] = Field("output", description="a tap, or a list of taps for multi-level losses")
    teacher: str | list[str] = "output"
    loss: str
    weight: float = Field(1.0, allow_inf_nan=False)
    warmup: int = Field(0, ge=0, description="training passes over which the weight ramps up from 0")
    project: bool = Field(False, description="always project the student tensor onto the teacher's shape (exits, OFA)")
    options: dict[str, Any] = Field(default_factory=dict)
    student_layout: Literal["auto", "channels_first", "tokens"] = "auto"
    teacher_layout: Literal["auto", "channels_first", "tokens"] = "auto"

    @model_validator(mode="after")
    def _loss_builds(self) -> PairSpec:
        """The loss exists and accepts its options (checked at load time, before any training)."""
        check_registered(LOSSES, self.loss, self.options)
        return self


class DistillSpec(StrictModel):
    """How the student learns from the teacher."""

    pairs: list[PairSpec] = Field(min_length=1)
    task_weight: float = Field(0.0, ge=0, allow_inf_nan=False, description="weight of the plain cross-entropy on labels")
    augment: Literal["none", "mixup", "jitter"] = "none"
    mixup_alpha: float = Field(1.0, gt=0)
    use_transfer: bool = Field(True, description="also train on the dataset's unlabeled transfer set")
    teacher_signal: Literal["live", "cache"] = Field(
        "live", description="live: the teacher runs on every batch; cache: its tapped outputs are computed once over "
                            "the training inputs (distill.signals.CachedTeacher) and served from memory")

    def teacher_taps(self) -> list[str]:
        """Every teacher tap of the pairs, and ``output``: what a teacher cache must hold."""
        taps = [t for p in self.pairs for t in ([p.teacher] if isinstance(p.teacher, str) else p.teacher)]
        return list(dict.fromkeys(["output", *taps]))

    @model_validator(mode="after")
    def _cacheable(self) -> DistillSpec:
        """A cache serves only the exact inputs it was built from, and stores whole tensors."""
        if self.teacher_signal != "cache":
            return self
        if self.augment != "none":
            raise ValueError(f"distill.teacher_signal 'cache' serves only the exact inputs it cached, and augment "
                             f"{self.augment!r} makes new ones; set distill.augment: none or distill.teacher_signal: live")
        indexed = [t for t in self.teacher_taps() if parse_tap(t).index is not None]
        if indexed:
            raise ValueError(f"distill.teacher_signal 'cache' stores whole tensors, but teacher taps {indexed} pick an "
                             "element or key; tap the submodule that returns the tensor, or use teacher_signal: live")
        return self


class BaselineSpec(StrictModel):
    """From-scratch students trained in the same run with the same budget, one per augmentation."""

    augments: list[Literal["none", "mixup", "jitter"]] = Field(default_factory=lambda: ["none", "mixup"])
    mixup_alpha: float = Field(1.0, gt=0)


Range = tuple[float, float]


def _check_range(field: str, bounds: Range) -> Range:
    low, high = bounds
    if not 0 < low <= high:
        raise ValueError(f"{field} must be [low, high] with 0 < low <= high, got {list(bounds)}")
    return bounds


class SearchSpec(StrictModel):
    """What ``distill tune`` searches (read by it only; ``distill run`` ignores it): which methods of
    :data:`distill.tasks.classification.space.METHODS`, knob ranges, and its budget."""

    methods: list[str] | None = Field(None, description="the methods to try (default: every one)")
    lr: Range | None = Field(None, description="learning-rate range, log scale (default: train.lr ÷ 5 to × 5)")
    ranges: dict[str, Range] = Field(default_factory=dict,
                                     description="knob name → [low, high], e.g. {temperature: [1, 4]}")
    budget: str | None = Field(None, description="wall-clock time for the trials, e.g. 20m (--budget overrides)")
    trials: PositiveInt | None = Field(None, description="at most this many trials (--trials overrides)")

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: list[str] | None) -> list[str] | None:
        if methods is None:
            return None
        if not methods:
            raise ValueError(f"the search space is empty: name at least one method of {', '.join(METHODS)}")
        for name in methods:
            if name not in METHODS:
                raise ValueError(unknown_name_message("search method", name, METHODS))
        if len(set(methods)) != len(methods):
            raise ValueError(f"names a method twice: {methods}")
        return methods

    @field_validator("lr")
    @classmethod
    def _lr_range(cls, bounds: Range | None) -> Range | None:
        return None if bounds is None else _check_range("lr", bounds)

    @field_validator("budget")
    @classmethod
    def _budget(cls, budget: str | None) -> str | None:
        if budget is not None:
            try:
                parse_budget(budget)
            except DistillError as err:
                raise ValueError(str(err)) from None
        return budget

    @model_validator(mode="after")
    def _known_knobs(self) -> SearchSpec:
        known = knob_names(self.methods)
        for name, bounds in self.ranges.items():
            if name not in known:
                methods = ", ".join(self.methods or METHODS)
                raise ValueError(f"ranges: {unknown_name_message('knob', name, known)} (the knobs of {methods}; "
                                 "the learning rate is search.lr)")
            _check_range(f"ranges.{name}", bounds)
        return self


class ClassificationRecipe(StrictModel):
    """A model-compression experiment: data, teacher, student, how to distil, budget, baselines."""

    task: Literal["classification"] = "classification"
    name: str = "experiment"
    data: DataSpec
    teacher: TeacherSpec | MultiTeacherSpec | Literal["self"]
    student: ModelSpec
    distill: DistillSpec | None = Field(None, description="how the student learns; left out: function matching "
                                                          "(distill.tasks.classification.defaults)")
    train: TrainConfig | None = Field(None, description="the students' budget; left out: scaled to the data size")
    baselines: BaselineSpec = Field(default_factory=BaselineSpec)
    search: SearchSpec | None = Field(None, description="what `distill tune` searches; `distill run` ignores it")

    @model_validator(mode="after")
    def _placement_cache_is_the_teacher_cache(self) -> ClassificationRecipe:
        """``train.teacher_placement: cache`` is this family's teacher cache: it sets ``distill.teacher_signal: cache``."""
        if self.train is None or self.train.teacher_placement != "cache":
            return self
        if self.distill is None:
            raise ValueError("train.teacher_placement 'cache' serves the teacher's outputs from distill.teacher_signal: "
                             "cache, which the default distill section (function matching, with mixup) cannot use: "
                             "name distill.pairs yourself with distill.augment: none")
        self.distill = DistillSpec.model_validate({**self.distill.model_dump(), "teacher_signal": "cache"})
        return self

    @model_validator(mode="after")
    def _distill_fits_the_teacher(self) -> ClassificationRecipe:
        if self.distill is None:
            if self.teacher == "self":
                raise ValueError("the default distill section (function matching) needs a separate teacher; for "
                                 "self-distillation name distill.pairs yourself, e.g. "
                                 "[{student: output, teacher: output, loss: kd}]")
            return self
        if self.distill.teacher_signal != "cache":
            return self
        if self.teacher == "self":
            raise ValueError("distill.teacher_signal 'cache' needs a separate teacher; self-distillation reads the "
                             "student's own forward pass, so set teacher_signal: live")
        if self.data.student_channels:
            raise ValueError("distill.teacher_signal 'cache' is not supported for cross-sensor recipes "
                             "(data.student_channels): set teacher_signal: live")
        return self
