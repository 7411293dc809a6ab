"""Typed, validated settings of one training run, and the strict base of every recipe section."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

#: TrainConfig fields that change how a run reports or is laid out over devices, not what it learns (left out of
#: cache keys)
TRAIN_ONLY = {"progress", "tensorboard", "log_every", "teacher_placement", "distributed", "device_memory_gib"}


class StrictModel(BaseModel):
    """A recipe section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class GroupConfig(StrictModel):
    """Settings of one parameter group an objective declares (e.g. a generator and its fake score);
    a field left unset takes the run's value. ``every``: the group steps once every ``every``
    optimizer steps (a two-time-scale update such as DMD2's)."""

    optimizer: Literal["adam", "adamw", "sgd"] | None = None
    lr: float | None = Field(None, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    momentum: float | None = Field(None, ge=0, lt=1)
    betas: tuple[float, float] | None = None
    max_grad_norm: float | None = Field(None, gt=0)
    every: PositiveInt = 1


class DistributedConfig(StrictModel):
    """How the student is laid out over several processes: ``ddp`` (a whole copy per process, gradients
    all-reduced) or ``fsdp`` (FSDP2 ``fully_shard``: each process holds 1/N of the weights, gradients and
    optimizer state; Zhao et al. 2023, "PyTorch FSDP"). One process holds everything either way."""

    strategy: Literal["ddp", "fsdp"] = "ddp"


class TrainConfig(StrictModel):
    """How long and how to optimise. Exactly one of ``steps`` / ``epochs`` sets the budget.

    ``batch_size`` is the global batch per optimizer step: under several processes it
    is split between them, so one process and N processes take the same steps.
    """

    steps: PositiveInt | None = None
    epochs: PositiveInt | None = None
    batch_size: PositiveInt = 100
    drop_last: bool = Field(True, description="drop each epoch's last, smaller batch; False trains on it too")
    grad_accum: PositiveInt = 1
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["constant", "cosine", "linear", "step"] = "constant"
    decay_at: float = Field(0.5, gt=0, lt=1, description="'step' schedule: the fraction of the budget (whole epochs "
                            "when the budget is epochs) after which the rate is multiplied by 'decay'")
    decay: float = Field(0.1, gt=0, description="'step' schedule: the factor applied at 'decay_at'")
    restart_at_decay: bool = Field(False, description="'step' schedule: clear the optimizer state (momentum) at "
                                   "the cut, as a new optimizer made there would (DC's evaluate_synset)")
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
    groups: dict[str, GroupConfig] = Field(default_factory=dict, description="per parameter group overrides")
    teacher_placement: Literal["replicate", "shard", "cache"] = Field(
        "replicate", description="replicate: a whole frozen teacher in every process; shard: FSDP2 over the processes; "
                                 "cache: no teacher in training, its outputs served by the family's cache")
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    device_memory_gib: float | None = Field(None, gt=0, description="memory of one device (default: a GPU's own, "
                                            "no limit on a CPU); a run whose weights, gradients and optimizer "
                                            "state exceed it is refused before training")

    @model_validator(mode="after")
    def _one_budget(self) -> TrainConfig:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("set exactly one of 'steps' or 'epochs' (the training budget)")
        return self

    def group(self, name: str) -> GroupConfig:
        """The settings of group ``name`` with the run's values filled in."""
        own = self.groups.get(name, GroupConfig())
        return GroupConfig(
            optimizer=own.optimizer or self.optimizer,
            lr=own.lr if own.lr is not None else self.lr,
            weight_decay=own.weight_decay if own.weight_decay is not None else self.weight_decay,
            momentum=own.momentum if own.momentum is not None else self.momentum,
            betas=own.betas,
            max_grad_norm=own.max_grad_norm if own.max_grad_norm is not None else self.max_grad_norm,
            every=own.every,
        )

    def total_steps(self, batches_per_epoch: int) -> int:
        """Optimizer steps in the whole run for a loader of ``batches_per_epoch`` batches."""
        if self.steps is not None:
            return self.steps
        return max(1, self.epochs * batches_per_epoch // self.grad_accum)
