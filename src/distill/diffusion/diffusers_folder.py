"""A diffusion model from a diffusers folder (``teacher.model: "diffusers:path/to/folder"``), read from
local files only, and few-step students written back as diffusers folders.

The folder is what ``save_pretrained`` writes: a pipeline (``model_index.json``, ``unet/``,
``scheduler/``) or a ``UNet2DModel`` and its scheduler saved side by side (``config.json``,
``diffusion_pytorch_model.safetensors``, ``scheduler_config.json``). The scheduler config decides
how distill reads the network:

- DDPM-family schedulers (discrete timesteps and ``alphas_cumprod``, Ho et al., 2020) become a
  :class:`~distill.diffusion.process.DiscreteDiffusion`; ``prediction_type`` ``epsilon``,
  ``v_prediction`` (Salimans & Ho, 2022) or ``sample`` becomes ``eps``, ``v`` or ``x0``, and
  ``clip_sample`` the denoiser's x0 clipping;
- ``FlowMatchEulerDiscreteScheduler`` (rectified flow, Liu et al., 2023; the SD3 convention) becomes
  the flow process, the network predicting the velocity ε − x0 at timestep ``σ·T``.

Class-conditional ``UNet2DModel`` s (``num_class_embeds``) take the data's labels; one extra class
embedding (``num_class_embeds`` = classes + 1) is the null class of classifier-free guidance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from distill.diffusion.process import DiscreteDiffusion, FlowProcess, Process
from distill.errors import ConfigError, DistillError
from distill.models.libraries import import_library

PREFIX = "diffusers:"
INSTALL = "'distill[diffusers]'"
#: schedulers of discrete-time variance-preserving models: their ``alphas_cumprod`` is the process
DISCRETE_SCHEDULERS = ("DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "EulerDiscreteScheduler",
                       "DPMSolverMultistepScheduler")
FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler",)
#: diffusers' ``prediction_type`` → distill's parameterisation
PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
NETWORKS = ("UNet2DModel",)


def diffusers_folder(model: str) -> Path | None:
    """The folder a ``"diffusers:FOLDER"`` model name names; None for any other name."""
    return Path(model[len(PREFIX):]) if model.startswith(PREFIX) else None


class DiffusersNet(nn.Module):
    """A diffusers ``UNet2DModel`` called as distill's networks are: ``net(x, t, y)`` with t ∈ [0, 1],
    passed on as the timestep ``scale·t + offset`` and the class labels ``y`` (negative labels and
    ``y = None`` are the null class, where the model has one). Its modules sit under ``unet.``; it keeps
    the scheduler config it was trained with, so its students are written back as diffusers folders."""

    def __init__(self, unet: nn.Module, scale: float, offset: float, null_label: int | None = None,
                 scheduler: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.unet, self.scale, self.offset, self.null_label = unet, float(scale), float(offset), null_label
        self.scheduler = dict(scheduler or {})  # the config it was trained with: what a student folder is written from

    @property
    def conditional(self) -> bool:
        return self.unet.class_embedding is not None

    @property
    def bottleneck(self) -> tuple[str, int] | None:
        """The module path of the UNet's middle block and its width (what DMD2's GAN head reads); None
        for a UNet without one."""
        if self.unet.mid_block is None:
            return None
        return "unet.mid_block", self.unet.config.block_out_channels[-1]

    def timestep(self, t: Tensor) -> Tensor:
        """The diffusers timestep of distill's time ``t``."""
        return (t.double() * self.scale + self.offset).float()

    def forward(self, x: Tensor, t: float | Tensor, y: Tensor | None = None, d: Tensor | None = None) -> Tensor:
        if d is not None:
            raise DistillError("a diffusers UNet takes no step size d: step-conditioned students (shortcut, "
                               "guidance distillation) need distill's mlp / unet / pointnet networks.")
        t = torch.as_tensor(t, device=x.device, dtype=torch.float32).reshape(-1).expand(x.shape[0])
        return self.unet(x, self.timestep(t), class_labels=self._labels(y, x)).sample

    def _labels(self, y: Tensor | None, x: Tensor) -> Tensor | None:
        if not self.conditional:
            if y is not None:
                raise DistillError("this diffusers UNet has no class embedding but got labels y; pass y=None.")
            return None
        if y is None:
            y = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
        y = y.long()
        if self.null_label is None:
            if bool((y < 0).any()):
                raise DistillError("this diffusers UNet has no null class (num_class_embeds equals the number of "
                                   "classes), so it cannot be called without a label; classifier-free guidance "
                                   "needs a model trained with one more class embedding, the last the null class.")
            return y
        return torch.where(y < 0, self.null_label, y)


@dataclass(frozen=True)
class DiffusersModel:
    """What a diffusers folder gives distill: the network and how to read it (process, parameterisation,
    x0 clipping)."""

    net: DiffusersNet
    process: Process
    prediction: str
    clip: float | None


def load_diffusers_model(model: str, input_shape: tuple[int, ...], num_classes: int, cfg_scale: float,
                         ) -> DiffusersModel:
    """The diffusers folder that ``model`` (``"diffusers:FOLDER"``) names, checked against the data
    (``input_shape`` without the batch dimension, ``num_classes`` 0 for an unconditional run) and the
    guidance scale; every problem is one :class:`ConfigError` naming the folder and the fix."""
    folder = diffusers_folder(model)
    unet_folder, scheduler_file = _layout(folder)
    unet_config = _read_json(unet_folder / "config.json")
    scheduler_config = _read_json(scheduler_file)
    if unet_config.get("_class_name") not in NETWORKS:
        raise ConfigError(f"{unet_folder / 'config.json'} describes a {unet_config.get('_class_name')!r}; distill "
                          f"reads {', '.join(NETWORKS)} (unconditional or class-conditional; text-conditioned "
                          "UNet2DConditionModels need a prompt encoder, which step distillation does not run).")
    process, prediction, clip, scale, offset = read_scheduler(scheduler_config, scheduler_file)
    check_data(unet_config, input_shape, unet_folder)
    null_label = _null_label(unet_config, num_classes, cfg_scale, unet_folder)
    diffusers = import_library("diffusers", INSTALL, model)
    try:
        unet = diffusers.UNet2DModel.from_pretrained(unet_folder, local_files_only=True)
    except Exception as err:  # noqa: BLE001  (diffusers' own reason, with the folder named)
        raise ConfigError(f"cannot load the UNet in {unet_folder}: {type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}") from None
    return DiffusersModel(DiffusersNet(unet.float(), scale, offset, null_label, scheduler_config), process,
                          prediction, clip)


def read_scheduler(config: dict[str, Any], where: Path) -> tuple[Process, str, float | None, float, float]:
    """(process, prediction, x0 clip, timestep scale, timestep offset) of a diffusers scheduler config:
    the network is called at timestep ``scale·t + offset`` for distill's time t."""
    name = config.get("_class_name")
    timesteps = int(config.get("num_train_timesteps", 1000))
    if name in FLOW_SCHEDULERS:
        if config.get("invert_sigmas"):
            raise ConfigError(f"{where}: invert_sigmas: true (noise at σ = 0) is not a flow distill reads; "
                              "only the usual x_σ = (1 − σ)·x0 + σ·ε.")
        return FlowProcess(), "velocity", None, timesteps, 0.0
    if name not in DISCRETE_SCHEDULERS:
        raise ConfigError(f"{where}: unknown scheduler class {name!r}; distill reads "
                          f"{', '.join(DISCRETE_SCHEDULERS + FLOW_SCHEDULERS)}. Save the scheduler the model "
                          "was trained with as one of these (e.g. DDPMScheduler.from_config(old.config)).")
    prediction_type = config.get("prediction_type", "epsilon")
    if prediction_type not in PREDICTION_TYPES:
        raise ConfigError(f"{where}: prediction_type {prediction_type!r} is not supported; distill reads "
                          f"{', '.join(PREDICTION_TYPES)}.")
    if config.get("thresholding"):
        raise ConfigError(f"{where}: thresholding: true (dynamic thresholding) is not supported; set it to false "
                          "(clip_sample: true clips x0 to clip_sample_range instead).")
    if config.get("timestep_type", "discrete") != "discrete":
        raise ConfigError(f"{where}: timestep_type {config['timestep_type']!r} feeds the network a function of σ; "
                          "distill reads networks called with discrete timesteps (timestep_type: discrete).")
    diffusers = import_library("diffusers", INSTALL, f"{PREFIX}{where.parent}")
    try:
        scheduler = getattr(diffusers, name).from_config(config)
    except Exception as err:  # noqa: BLE001
        raise ConfigError(f"{where}: diffusers cannot build the {name}: {type(err).__name__}: {err}") from None
    clip = float(scheduler.config.clip_sample_range) if scheduler.config.get("clip_sample") else None
    process = DiscreteDiffusion(scheduler.alphas_cumprod)
    return process, PREDICTION_TYPES[prediction_type], clip, process.num_timesteps, -1.0


def check_data(unet_config: dict[str, Any], input_shape: tuple[int, ...], where: Path) -> None:
    """Refuse data whose images are not the UNet's (``in_channels`` × ``sample_size``)."""
    channels, size = unet_config.get("in_channels", 3), unet_config.get("sample_size")
    size = None if size is None else tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    expected = (channels, *(size or ("H", "W")))
    if len(input_shape) != 3 or input_shape[0] != channels or (size is not None and tuple(input_shape[1:]) != size):
        raise ConfigError(f"the UNet in {where} takes images of {'×'.join(map(str, expected))} (channels × height × "
                          f"width: in_channels, sample_size), but the data's are {'×'.join(map(str, input_shape))}. "
                          "Give images of that shape: for image_folder set options.size: [H, W] and "
                          "grayscale: true (1 channel) or false (RGB); for arrays save them so.")


def _null_label(unet_config: dict[str, Any], num_classes: int, cfg_scale: float, where: Path) -> int | None:
    """The null class's label of a class-conditional UNet (None: it has none), checked against the data's
    classes and the guidance scale."""
    embeds, kind = unet_config.get("num_class_embeds"), unet_config.get("class_embed_type")
    if kind is not None:
        raise ConfigError(f"the UNet in {where} embeds its conditioning as {kind!r}; distill passes class labels "
                          "to UNet2DModels with num_class_embeds (class_embed_type unset).")
    if not embeds:
        if num_classes:
            raise ConfigError(f"teacher.conditional is true, but the UNet in {where} has no class embedding "
                              "(num_class_embeds unset); set conditional: false.")
        return None
    if not num_classes:
        raise ConfigError(f"the UNet in {where} is class-conditional (num_class_embeds: {embeds}); set "
                          "teacher.conditional: true and give labelled data.")
    if embeds not in (num_classes, num_classes + 1):
        raise ConfigError(f"the UNet in {where} has {embeds} class embeddings, but the data has {num_classes} "
                          f"classes; it needs {num_classes} (no null class) or {num_classes + 1} (the last the "
                          "null class of classifier-free guidance).")
    if embeds == num_classes and cfg_scale != 1.0:
        raise ConfigError(f"teacher.cfg_scale {cfg_scale} needs a null class, and the UNet in {where} has none "
                          f"(num_class_embeds equals the {num_classes} classes); set cfg_scale: 1.")
    return num_classes if embeds == num_classes + 1 else None


def _layout(folder: Path) -> tuple[Path, Path]:
    """(the UNet's folder, the scheduler config file) of a pipeline folder or a flat one."""
    if not folder.is_dir():
        raise ConfigError(f"diffusers folder {folder} ({folder.resolve()}) does not exist; give the folder that "
                          "save_pretrained wrote (paths are relative to the current directory; nothing is "
                          "downloaded, so hub names do not work).")
    unet = folder / "unet" if (folder / "unet" / "config.json").is_file() else folder
    if not (unet / "config.json").is_file():
        raise ConfigError(f"{folder} is not a diffusers model folder: no unet/config.json (a pipeline's "
                          "save_pretrained) or config.json (a UNet2DModel's).")
    for scheduler in (folder / "scheduler" / "scheduler_config.json", folder / "scheduler_config.json"):
        if scheduler.is_file():
            return unet, scheduler
    raise ConfigError(f"{folder} has no scheduler config (looked for scheduler/scheduler_config.json and "
                      "scheduler_config.json); it says how the UNet was trained. Save the scheduler you trained "
                      f"with beside it: scheduler.save_pretrained('{folder}').")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read {path} as JSON ({err}); re-save the folder with save_pretrained.") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} holds a {type(config).__name__}, not a config mapping; re-save the folder.")
    return config
