"""Teachers cached by content hash, so a rerun of the same recipe does not retrain them."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from distill.engine.checkpoint import load_weights_file
from distill.errors import CheckpointError


def cache_root() -> Path:
    """``$DISTILL_CACHE`` or ``~/.cache/distill``."""
    return Path(os.environ.get("DISTILL_CACHE", Path.home() / ".cache" / "distill"))


def content_hash(spec: dict) -> str:
    """A short stable hash of a JSON-able description of how a teacher is made."""
    text = json.dumps(spec, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_teacher_path(spec: dict) -> Path:
    """Cache folder of the teacher described by ``spec``."""
    return cache_root() / "teachers" / content_hash(spec)


def load_cached_teacher(model: nn.Module, spec: dict) -> dict | None:
    """Load cached weights into ``model`` and return their recorded info, or None on a miss."""
    folder = cached_teacher_path(spec)
    if not (folder / "info.json").exists():
        return None
    try:
        model.load_state_dict(load_weights_file(folder / "weights.safetensors"))
    except (CheckpointError, RuntimeError):
        return None  # a stale or damaged cache entry is retrained, not trusted
    return json.loads((folder / "info.json").read_text())


def store_teacher(model: nn.Module, spec: dict, info: dict) -> Path:
    """Write ``model``'s weights and ``info`` to the cache, atomically."""
    folder = cached_teacher_path(spec)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "weights.safetensors.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, folder / "weights.safetensors")
    (folder / "info.json.tmp").write_text(json.dumps({**info, "spec": spec}, indent=1, default=str))
    os.replace(folder / "info.json.tmp", folder / "info.json")
    return folder
