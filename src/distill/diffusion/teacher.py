"""A recipe's diffusion / flow model, built fresh or fitted once and loaded from the content-hash cache:
the steps family's teacher and the score family's prior."""

from __future__ import annotations

import torch
from torch import nn

from distill.data.base import DataSplits
from distill.diffusion.denoiser import Denoiser
from distill.diffusion.nets import build_denoiser
from distill.diffusion.objective import DenoisingObjective
from distill.diffusion.process import build_process
from distill.diffusion.recipe import DiffusionModelSpec
from distill.engine.cache import data_identity, fit_or_load
from distill.engine.config import TRAIN_ONLY
from distill.models.base import frozen


def build_diffusion_net(spec: DiffusionModelSpec, splits: DataSplits, step_conditioned: bool = False) -> nn.Module:
    """A fresh network of ``spec``'s architecture for ``splits``' samples."""
    return build_denoiser(spec.model, splits.input_shape, splits.num_classes if spec.conditional else 0,
                          step_conditioned, **spec.options)


def build_diffusion_model(spec: DiffusionModelSpec, splits: DataSplits) -> Denoiser:
    """``spec``'s model, untrained: network, process, parameterisation and classifier-free guidance scale."""
    torch.manual_seed(spec.train.seed)
    return Denoiser(build_diffusion_net(spec, splits), build_process(spec.process), spec.prediction,
                    splits.num_classes if spec.conditional else 0, spec.cfg_scale, spec.clip)


def obtain_diffusion_model(data: dict, spec: DiffusionModelSpec, splits: DataSplits, run,
                           label: str = "teacher") -> tuple[Denoiser, dict]:
    """``spec``'s model, from the content-hash cache or trained on the engine (denoising or flow
    matching, with label dropout for classifier-free guidance); frozen, with its training info.
    ``data`` identifies the training data in the cache key (a recipe's data section)."""
    denoiser = build_diffusion_model(spec, splits)
    cache_spec = {"kind": "generative-teacher", "data": data_identity(data, splits),
                  **spec.model_dump(mode="json", exclude={"cfg_scale", "clip", "solver", "steps", "train"}),
                  "train": spec.train.model_dump(mode="json", exclude=TRAIN_ONLY)}

    def fit() -> dict:
        result = run.train(DenoisingObjective(denoiser, spec.cond_drop if spec.conditional else 0.0), splits.train,
                           spec.train, label)
        return {"seconds": result.seconds, "loss": result.final.get("train_loss")}

    info, _ = fit_or_load(denoiser, cache_spec, fit)
    return frozen(denoiser), info
