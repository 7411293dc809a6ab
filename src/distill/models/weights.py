"""A network's trained weights from the user's file: ``.safetensors`` (or a distill checkpoint folder),
or a PyTorch state dict (``.pt``, ``.pth``, ``.bin``) read with ``torch.load(weights_only=True)``,
never plain pickle."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from distill.engine.checkpoint import load_weights_file, weights_for
from distill.errors import CheckpointError


def read_weights(path: Path | str) -> dict[str, torch.Tensor]:
    """The ``{name: tensor}`` state dict in ``path``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no weights file {path} (looked in {path.resolve().parent}); paths are relative to "
                              "the current directory.")
    if path.is_dir() or path.suffix == ".safetensors":
        return load_weights_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot read {path} with torch.load(weights_only=True) ({reason}); save the "
                              "weights with torch.save(model.state_dict(), path) or as a .safetensors file.") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        nested = [k for k, v in state.items() if isinstance(v, Mapping)] if isinstance(state, Mapping) else []
        hint = f"; its entries {nested[:3]} hold mappings: save the model's state dict itself" if nested else ""
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict of names to tensors{hint} "
                              "(torch.save(model.state_dict(), path)).")
    return dict(state)


def load_weights(module: nn.Module, path: Path | str) -> nn.Module:
    """``module`` with the weights in ``path``; missing, unexpected or reshaped entries are named."""
    module.load_state_dict(weights_for(module, read_weights(path), path))
    return module
