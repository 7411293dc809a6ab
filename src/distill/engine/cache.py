"""The content-hash fit-or-load cache: a model described by the same recipe is trained once.

The key is a SHA-256 of a JSON description of how the model is made (data, network,
options, training settings); it identifies the recipe, not the weights. An entry that
exists but cannot be loaded (damaged, or written for another architecture) is
reported and refitted, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

from torch import nn

from distill.engine.checkpoint import load_weights_file, save_weights_file
from distill.errors import CheckpointError


def cache_root() -> Path:
    """``$DISTILL_CACHE`` or ``~/.cache/distill``."""
    return Path(os.environ.get("DISTILL_CACHE", Path.home() / ".cache" / "distill"))


def content_hash(spec: dict) -> str:
    """A short stable hash (16 hex digits of SHA-256) of a JSON-able description of how a model is made."""
    text = json.dumps(spec, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_path(spec: dict) -> Path:
    """Cache folder of the model described by ``spec``."""
    return cache_root() / "models" / content_hash(spec)


def load_cached(model: nn.Module, spec: dict) -> dict | None:
    """Load cached weights into ``model`` and return their recorded info, or None on a miss."""
    folder = cached_path(spec)
    if not (folder / "info.json").exists():
        return None
    try:
        model.load_state_dict(load_weights_file(folder / "weights.safetensors"))
        return json.loads((folder / "info.json").read_text())
    except (CheckpointError, RuntimeError, ValueError) as err:
        warnings.warn(f"the cached model at {folder} could not be loaded ({str(err).splitlines()[0]}); "
                      "it is trained again and the entry replaced.", stacklevel=2)
        return None


def store_cached(model: nn.Module, spec: dict, info: dict) -> Path:
    """Write ``model``'s weights and ``info`` to the cache, atomically."""
    folder = cached_path(spec)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights_file(folder / "weights.safetensors", model.state_dict())
    (folder / "info.json.tmp").write_text(json.dumps({**info, "spec": spec}, indent=1, default=str))
    os.replace(folder / "info.json.tmp", folder / "info.json")
    return folder


def data_identity(section: dict, splits) -> dict:
    """A recipe's data section for a cache key, plus the content fingerprint of user files
    (``splits.extra["fingerprint"]``): a file overwritten under the same name is new data."""
    fingerprint = splits.extra.get("fingerprint")
    return section if fingerprint is None else {**section, "fingerprint": fingerprint}


def fit_or_load(model: nn.Module, spec: dict, fit: Callable[[], dict]) -> tuple[dict, bool]:
    """``(info, cached)``: ``model`` loaded from the cache, or ``fit()`` (which trains it in place and
    returns its info) and then stored."""
    info = load_cached(model, spec)
    if info is not None:
        return info, True
    info = fit()
    store_cached(model, spec, info)
    return info, False
