"""Model libraries a recipe names by prefix: ``torchvision:NAME``, ``timm:NAME``, ``hf:FOLDER``.

torchvision and timm are optional extras (``pip install 'distill[torchvision]'`` / ``'distill[timm]'``)
whose architectures are built untrained — ``weights=None``, ``pretrained=False`` — because nothing is
downloaded at run time: trained weights come from the user's file (``teacher.weights``). A Hugging
Face folder (``save_pretrained`` output) is read with ``local_files_only=True`` and carries its weights.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import Tensor, nn

from distill.errors import ConfigError, unknown_name_message


def import_library(package: str, install: str, model: str) -> ModuleType:
    """``package``, or one clear error that names ``model`` and what to install (``install``)."""
    try:
        return importlib.import_module(package)
    except ModuleNotFoundError as err:
        if err.name != package:
            raise
        raise ConfigError(f"model {model!r} needs the {package} package, which is not installed: pip install "
                          f"{install} (a build that matches your torch).") from None
    except (ImportError, RuntimeError, OSError) as err:
        raise ConfigError(f"model {model!r} needs {package}, which is installed but does not import ({type(err).__name__}: {err}); install the "
                          "build that matches your torch version.") from None


def _refuse_downloads(model: str, options: dict[str, Any], keys: dict[str, Any]) -> None:
    for key, allowed in keys.items():
        if options.get(key, allowed) != allowed:
            raise ConfigError(f"model {model!r}: options.{key}={options[key]!r} would download weights, and distill "
                              "never downloads; leave it out and give the trained weights as a file "
                              "(teacher.weights: my_weights.safetensors or a .pt state dict).")


def _torchvision(lib: ModuleType, name: str, input_shape: tuple, num_classes: int, options: dict) -> nn.Module:
    _refuse_downloads(f"torchvision:{name}", options, {"weights": None, "weights_backbone": None})
    if name not in lib.models.list_models():
        raise ConfigError(unknown_name_message("torchvision model", name, lib.models.list_models()))
    return lib.models.get_model(name, **{"weights": None, "num_classes": num_classes, **options})


def _timm(lib: ModuleType, name: str, input_shape: tuple, num_classes: int, options: dict) -> nn.Module:
    _refuse_downloads(f"timm:{name}", options, {"pretrained": False})
    if not lib.is_model(name):
        raise ConfigError(unknown_name_message("timm model", name, lib.list_models()))
    defaults = {"num_classes": num_classes, "in_chans": input_shape[0]}
    return lib.create_model(name, **{**defaults, **options, "pretrained": False})


def _hf(lib: ModuleType, folder: str, input_shape: tuple, num_classes: int, options: dict) -> nn.Module:
    if not (Path(folder) / "config.json").is_file():
        raise ConfigError(f"model 'hf:{folder}': {Path(folder).resolve()} is not a Hugging Face model folder (no "
                          "config.json); give the folder that save_pretrained wrote. Nothing is downloaded, so hub "
                          "names do not work.")
    model = lib.AutoModelForImageClassification.from_pretrained(folder, local_files_only=True, **options)
    return ImageClassifierLogits(model)


@dataclass(frozen=True)
class Library:
    """One library: its package, what to install when it is missing, and how it builds a named model."""

    package: str
    install: str
    builder: Callable[[ModuleType, str, tuple, int, dict], nn.Module]
    carries_weights: bool = False

    def build(self, prefix: str, name: str, input_shape: Sequence[int], num_classes: int,
              options: dict[str, Any]) -> nn.Module:
        """The model ``prefix:name`` for the data; the library's own errors come back naming it."""
        lib = import_library(self.package, self.install, f"{prefix}:{name}")
        try:
            return self.builder(lib, name, tuple(input_shape), num_classes, options)
        except ConfigError:
            raise
        except Exception as err:  # noqa: BLE001  (the library's own message, with the model named)
            raise ConfigError(f"model '{prefix}:{name}' failed to build with options {options}: "
                              f"{type(err).__name__}: {err}") from None

    def version(self, model: str) -> str:
        """``package version``, for the cache keys of ``model``."""
        return f"{self.package} {getattr(import_library(self.package, self.install, model), '__version__', '?')}"


class ImageClassifierLogits(nn.Module):
    """A Hugging Face image classifier that returns its logits tensor, as every classification
    objective, metric and the ``output`` tap expect; its own modules sit under ``model.``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(pixel_values=x).logits


LIBRARIES = {
    "torchvision": Library("torchvision", "'distill[torchvision]'", _torchvision),
    "timm": Library("timm", "'distill[timm]'", _timm),
    "hf": Library("transformers", "transformers", _hf, carries_weights=True),
}
