"""A recipe's diffusion / flow model — given (a diffusers folder, or a weights file) or built fresh and
fitted once and loaded from the content-hash cache: the steps family's teacher and the score family's prior."""

from __future__ import annotations

import torch
from torch import nn

from distill.data.base import DataSplits
from distill.diffusion.denoiser import Denoiser
from distill.diffusion.diffusers_folder import load_diffusers_model
from distill.diffusion.nets import build_denoiser
from distill.diffusion.objective import DenoisingObjective
from distill.diffusion.process import build_process
from distill.diffusion.recipe import DiffusionModelSpec
from distill.diffusion.sources import ImportedNet, build_imported_net, is_diffusers, is_zoo
from distill.engine.cache import data_identity, fit_or_load
from distill.engine.config import TRAIN_ONLY
from distill.errors import ConfigError
from distill.models.base import frozen
from distill.models.source import source_identity
from distill.models.weights import load_weights


def model_classes(spec: DiffusionModelSpec, splits: DataSplits) -> int:
    """The classes the model is conditioned on (0: unconditional); conditioning needs labelled data."""
    if spec.conditional and not splits.num_classes:
        raise ConfigError("teacher.conditional (prior.conditional) is true, but the data has no labels; set "
                          "conditional: false, or give labelled data.")
    return splits.num_classes if spec.conditional else 0


def build_diffusion_net(spec: DiffusionModelSpec, splits: DataSplits, step_conditioned: bool = False) -> nn.Module:
    """A fresh network of ``spec``'s architecture for ``splits``' samples (distill's own, or the user's module
    by import path, with ``spec.weights`` when given)."""
    if step_conditioned and not is_zoo(spec.model):
        raise ConfigError(step_conditioning_message(spec.model))
    classes = model_classes(spec, splits)
    if is_zoo(spec.model):
        net = build_denoiser(spec.model, splits.input_shape, classes, step_conditioned, **spec.options)
    else:
        net = build_imported_net(spec.model, splits.input_shape, classes, spec.options)
    if spec.weights is not None and not step_conditioned:  # a step-conditioned student takes them from the teacher
        load_weights(net.module if isinstance(net, ImportedNet) else net, spec.weights)  # the file's own names
    return net


def step_conditioning_message(model: str) -> str:
    return (f"this method trains a step-conditioned student (a network told its step size or guidance scale), "
            f"which only distill's mlp / unet / pointnet networks are; teacher {model!r} has no such input. Pick progressive, "
            "consistency, ict, reflow or dmd.")


def build_diffusion_model(spec: DiffusionModelSpec, splits: DataSplits) -> Denoiser:
    """``spec``'s model — untrained unless given (a diffusers folder, or ``spec.weights``): network, process,
    parameterisation, classifier-free guidance scale and x0 clipping."""
    torch.manual_seed(spec.train.seed)
    classes = model_classes(spec, splits)
    if is_diffusers(spec.model):
        found = load_diffusers_model(spec.model, tuple(splits.input_shape), classes, spec.cfg_scale)
        return Denoiser(found.net, found.process, found.prediction, classes, spec.cfg_scale, found.clip)
    return Denoiser(build_diffusion_net(spec, splits), build_process(spec.process), spec.prediction, classes,
                    spec.cfg_scale, spec.clip)


def given_source(spec: DiffusionModelSpec) -> str | None:
    """Where a model the run does not train gets its weights (a diffusers folder, a weights file); None if
    the run trains it."""
    if is_diffusers(spec.model):
        return spec.model
    return None if spec.weights is None else str(spec.weights)


def obtain_diffusion_model(data: dict, spec: DiffusionModelSpec, splits: DataSplits, run,
                           label: str = "teacher") -> tuple[Denoiser, dict]:
    """``spec``'s model: given, from the content-hash cache, or trained on the engine (denoising or flow
    matching, with label dropout for classifier-free guidance); frozen, with its info.
    ``data`` identifies the training data in the cache key (a recipe's data section)."""
    denoiser = build_diffusion_model(spec, splits)
    given = given_source(spec)
    if given is not None:
        return frozen(denoiser), {"given": given, "process": type(denoiser.process).__name__,
                                  "prediction": denoiser.prediction}
    cache_spec = {"kind": "generative-teacher", "data": data_identity(data, splits),
                  **spec.model_dump(mode="json", exclude={"cfg_scale", "clip", "solver", "steps", "train", "weights"}),
                  **source_identity(spec.model), "train": spec.train.model_dump(mode="json", exclude=TRAIN_ONLY)}

    def fit() -> dict:
        result = run.train(DenoisingObjective(denoiser, spec.cond_drop if spec.conditional else 0.0), splits.train,
                           spec.train, label)
        return {"seconds": result.seconds, "loss": result.final.get("train_loss")}

    info, _ = fit_or_load(denoiser, cache_spec, fit)
    return frozen(denoiser), info
