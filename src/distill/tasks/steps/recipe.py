"""Step-distillation recipes (``task: steps``): data, a many-step teacher, a method, an evaluation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from distill.diffusion.recipe import DiffusionModelSpec, GenDataSpec
from distill.engine.config import StrictModel, TrainConfig
from distill.engine.placement import placement_refusal
from distill.experiment.recipe import RegisteredSpec
from distill.metrics.classifier import ClassifierSpec


class MethodSpec(RegisteredSpec):
    """A registered step-distillation method and its options (checked when the recipe loads)."""

    @classmethod
    def registry(cls):
        from distill.tasks.steps.methods import STEP_METHODS

        return STEP_METHODS


class EvalSpec(StrictModel):
    """How samples are scored: against ``samples`` held-out real points, for each step count.

    The teacher is scored at ``teacher_steps`` and at its own full step count; an empty
    list skips the teacher rows (a benchmark that already scored this teacher). The noise floor
    is a second held-out draw (``floor_from: test``, disjoint from the first; at most half the
    test split each) or training points (``train``); ``bootstrap`` resamples give the headline
    distance's excess over the floor a 95 % interval (0: no excess)."""

    samples: PositiveInt = 2000
    teacher_steps: list[PositiveInt] = Field(default_factory=lambda: [1, 2, 4, 8])
    seed: int = 1234
    floor_from: Literal["train", "test"] = "test"
    bootstrap: int = Field(200, ge=0)
    classifier: ClassifierSpec = Field(default_factory=ClassifierSpec)

    @field_validator("teacher_steps")
    @classmethod
    def _sorted(cls, value: list[int]) -> list[int]:
        return sorted(set(value))


class StepsRecipe(StrictModel):
    """One step-distillation experiment: ``distill run recipes/steps/<method>.yaml``."""

    name: str
    task: Literal["steps"]
    data: GenDataSpec
    teacher: DiffusionModelSpec = Field(default_factory=DiffusionModelSpec)
    method: MethodSpec
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(steps=2000, batch_size=256))
    evaluate: EvalSpec = Field(default_factory=EvalSpec)

    @model_validator(mode="after")
    def _placement(self) -> StepsRecipe:
        refusal = placement_refusal(self.train, "steps", "a method may call the teacher's network on its own (guidance "
                                    "calls teacher.net), outside the teacher's forward pass where FSDP2 gathers "
                                    "the weights, so sharding it is not set up yet")
        if refusal:
            raise ValueError(refusal)
        return self
