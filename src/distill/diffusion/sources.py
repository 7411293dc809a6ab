"""Where a diffusion model's network comes from, named by ``teacher.model`` / ``prior.model``:

===============================  ==============================================================
``mlp``, ``unet``, ``pointnet``  distill's denoisers (:mod:`distill.diffusion.nets`), trained by the run
``my_models:build_net``          the user's own module by import path (``distill.models.source``):
                                 ``forward(x, t)`` — or ``forward(x, t, y)`` when class-conditional,
                                 label −1 the null class of classifier-free guidance —
                                 with t ∈ [0, 1] per row (0 data, 1 noise), returning a tensor shaped
                                 like x; given by ``weights`` or trained by the run, its process and
                                 prediction declared in the recipe
``diffusers:path/to/folder``     a diffusers folder with its weights and scheduler
                                 (:mod:`distill.diffusion.diffusers_folder`)
===============================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from distill.diffusion.diffusers_folder import PREFIX
from distill.diffusion.nets import DENOISERS
from distill.errors import ConfigError, DistillError, unknown_name_message
from distill.models.libraries import LIBRARIES
from distill.models.source import build_network

FORMS = "'mlp', 'unet', 'pointnet', 'diffusers:path/to/folder' or your module 'my_models:build_net'"


def check_model_name(name: str) -> str:
    """``name`` if it names a diffusion network in one of the forms above, else one clear error."""
    prefix, colon, rest = name.partition(":")
    if not colon:
        if name not in DENOISERS:
            raise ConfigError(f"{unknown_name_message('diffusion model', name, DENOISERS.names())} Your own: {FORMS}.")
        return name
    if not prefix or not rest:
        raise ConfigError(f"model {name!r}: name a folder or a callable after the colon, e.g. {FORMS}.")
    if prefix in LIBRARIES:
        raise ConfigError(f"model {name!r}: {prefix}: names an image classifier; a diffusion model is {FORMS}.")
    return name


def is_zoo(name: str) -> bool:
    """Whether ``name`` is one of distill's own denoisers."""
    return ":" not in name


def is_diffusers(name: str) -> bool:
    return name.startswith(PREFIX)


class ImportedNet(nn.Module):
    """The user's denoiser called as distill's networks are, ``net(x, t, y)``: ``module(x, t)``, or
    ``module(x, t, y)`` when ``conditional``, with ``t`` one time per row. Its modules sit under ``module.``."""

    def __init__(self, module: nn.Module, conditional: bool) -> None:
        super().__init__()
        self.module, self.conditional = module, conditional

    def forward(self, x: Tensor, t: float | Tensor, y: Tensor | None = None, d: Tensor | None = None) -> Tensor:
        if d is not None:
            raise DistillError("your own denoiser takes no step size d: step-conditioned students (shortcut, "
                               "guidance distillation) need distill's mlp / unet / pointnet networks.")
        t = torch.as_tensor(t, device=x.device, dtype=x.dtype).reshape(-1).expand(x.shape[0])
        return self.module(x, t, y) if self.conditional else self.module(x, t)


def build_imported_net(name: str, input_shape: Sequence[int], num_classes: int, options: dict) -> ImportedNet:
    """The user's module ``name`` (an import path) for the data, wrapped, after one pass that checks it
    returns a tensor shaped like its input."""
    net = ImportedNet(build_network(name, input_shape, num_classes, options), num_classes > 0)
    check_denoiser_forward(net, tuple(input_shape), num_classes, f"teacher.model {name!r}")
    return net


def check_denoiser_forward(net: nn.Module, input_shape: tuple[int, ...], num_classes: int, what: str) -> None:
    """One pass of two zero inputs at t = 0.5 (with label 0 when conditional): a network that cannot take
    the data, or does not return the input's shape, fails here naming both."""
    x = torch.zeros(2, *input_shape)
    y = torch.zeros(2, dtype=torch.long) if num_classes else None
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(x, torch.full((2,), 0.5), y)
    except Exception as err:  # noqa: BLE001  (user code: name the model and the shapes it got)
        raise ConfigError(f"{what} cannot denoise the data's inputs of shape {input_shape} (batch not counted): "
                          f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. A denoiser "
                          f"takes forward(x, t{', y' if num_classes else ''}) with t of shape (batch,) in [0, 1].") from None
    finally:
        net.train(was_training)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ConfigError(f"{what} returns {got} for inputs of shape {tuple(x.shape)}; a denoiser returns one tensor "
                          "shaped like its input (its prediction of ε, x0, v or the velocity).")
