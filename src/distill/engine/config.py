"""Typed, validated settings of one training run."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator


class TrainConfig(BaseModel):
    """How long and how to optimise. Exactly one of ``steps`` / ``epochs`` sets the budget.

    ``batch_size`` is the global batch per optimizer step: under several processes it
    is split between them, so one process and N processes take the same steps.
    """

    model_config = ConfigDict(extra="forbid")

    steps: PositiveInt | None = None
    epochs: PositiveInt | None = None
    batch_size: PositiveInt = 100
    grad_accum: PositiveInt = 1
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    max_grad_norm: float | None = Field(None, gt=0)
    mixed_precision: Literal["no", "fp16", "bf16", "auto"] = "no"
    seed: int = 0
    eval_every: int = Field(0, ge=0, description="optimizer steps between evaluations; 0 = only at the end")
    checkpoint_every: int = Field(0, ge=0, description="optimizer steps between checkpoints; 0 = only at the end")
    keep_checkpoints: PositiveInt = 2
    log_every: PositiveInt = 50
    progress: bool = True
    tensorboard: bool = False

    @model_validator(mode="after")
    def _one_budget(self) -> TrainConfig:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("set exactly one of 'steps' or 'epochs' (the training budget)")
        return self

    def total_steps(self, batches_per_epoch: int) -> int:
        """Optimizer steps in the whole run for a loader of ``batches_per_epoch`` batches."""
        if self.steps is not None:
            return self.steps
        return max(1, self.epochs * batches_per_epoch // self.grad_accum)
