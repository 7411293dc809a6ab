"""The recipe sections of a generative run: its data and its diffusion / flow model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from distill.data.generative import check_generative_name
from distill.diffusion.sources import check_model_name, is_diffusers
from distill.engine.config import StrictModel, TrainConfig
from distill.errors import ConfigError


class GenDataSpec(StrictModel):
    """A 2-D toy (``8gaussians``, ``checkerboard``, ``moons``, ``swissroll``), an image set
    (``digits``, ``mnist``) rescaled to [−1, 1], or point sets (``mesh_points``, ``point_sets``) as given."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        check_generative_name(name)
        return name


class DiffusionModelSpec(StrictModel):
    """A many-step diffusion / flow model: network, process, parameterisation, sampler and its training.

    ``model`` is distill's ``mlp`` / ``unet`` / ``pointnet`` (point sets), your module by import path
    (``my_models:build_net``, its ``process`` and ``prediction`` declared here; given by ``weights`` or
    trained by the run), or a
    diffusers folder (``diffusers:path/to/folder``, given with its weights; its scheduler config says the
    process, prediction and clipping, so those fields stay at their defaults).
    """

    model: str = Field("mlp", description="'mlp', 'unet', 'pointnet', 'diffusers:path/to/folder' or "
                                          "'my_models:build_net'")
    options: dict[str, Any] = Field(default_factory=dict)
    weights: Path | None = Field(None, description="trained weights of the network (.safetensors or a .pt state "
                                                   "dict); the model is then given, not trained")
    process: Literal["flow", "diffusion"] = "flow"
    prediction: Literal["eps", "v", "x0", "velocity"] = "velocity"
    conditional: bool = False
    cond_drop: float = Field(0.1, ge=0, lt=1)
    cfg_scale: float = 1.0
    clip: float | None = Field(None, gt=0)
    solver: Literal["ddim", "euler", "heun"] = "heun"
    steps: PositiveInt = 32
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(steps=4000, batch_size=256))

    @field_validator("model")
    @classmethod
    def _known_model(cls, model: str) -> str:
        return check_model_name(model)

    @model_validator(mode="after")
    def _folder_says(self) -> DiffusionModelSpec:
        if not is_diffusers(self.model):
            return self
        fixed = {"options": {}, "weights": None, "process": "flow", "prediction": "velocity", "clip": None}
        changed = [name for name, default in fixed.items() if getattr(self, name) != default]
        if changed:
            raise ConfigError(f"model {self.model!r}: the diffusers folder carries its weights and its scheduler "
                              f"config says the process, prediction and clipping; remove {', '.join(changed)}.")
        return self
