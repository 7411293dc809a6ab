"""The recipe sections of a generative run: its data and its diffusion / flow model."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator

from distill.data.generative import check_generative_name
from distill.engine.config import StrictModel, TrainConfig


class GenDataSpec(StrictModel):
    """A 2-D toy (``8gaussians``, ``checkerboard``, ``moons``, ``swissroll``) or an image set
    (``digits``, ``mnist``) rescaled to [−1, 1]."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        check_generative_name(name)
        return name


class DiffusionModelSpec(StrictModel):
    """A many-step diffusion / flow model: network, process, parameterisation, sampler and its training."""

    model: Literal["mlp", "unet"] = "mlp"
    options: dict[str, Any] = Field(default_factory=dict)
    process: Literal["flow", "diffusion"] = "flow"
    prediction: Literal["eps", "v", "x0", "velocity"] = "velocity"
    conditional: bool = False
    cond_drop: float = Field(0.1, ge=0, lt=1)
    cfg_scale: float = 1.0
    clip: float | None = Field(None, gt=0)
    solver: Literal["ddim", "euler", "heun"] = "heun"
    steps: PositiveInt = 32
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(steps=4000, batch_size=256))
