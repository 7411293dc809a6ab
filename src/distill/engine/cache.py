"""The content-hash cache every family shares: what is described by the same identity is built once.

One primitive, :func:`cached_entry`: an *identity* (a JSON-able description of how
something is made — data, network, options, training settings, file hashes) names a
folder; on a miss ``build`` fills a temporary folder that is renamed into place only
when complete, with the identity recorded beside it, so an interrupted build never
looks valid. An entry whose recorded identity differs from the one asked for is
stale: it is never served, only rebuilt. Teachers (:func:`fit_or_load`), teacher
signals, render sets and generated data all go through it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distill.engine.checkpoint import load_weights_file, save_weights_file
from distill.errors import CheckpointError

IDENTITY_FILE = "identity.json"
INFO_FILE = "info.json"
WEIGHTS_FILE = "weights.safetensors"


def cache_root() -> Path:
    """``$DISTILL_CACHE`` or ``~/.cache/distill``."""
    return Path(os.environ.get("DISTILL_CACHE", Path.home() / ".cache" / "distill"))


def _canonical(identity: dict) -> str:
    return json.dumps(identity, sort_keys=True, default=str)


def content_hash(identity: dict) -> str:
    """A short stable hash (16 hex digits of SHA-256) of a JSON-able description of how something is made."""
    return hashlib.sha256(_canonical(identity).encode()).hexdigest()[:16]


def array_hash(*arrays) -> str:
    """A short stable hash (16 hex digits of SHA-256) of arrays' dtypes, shapes and bytes (numpy or torch;
    torch tensors are read on the CPU): token blocks, mesh vertices, a teacher's weights."""
    digest = hashlib.sha256()
    for array in arrays:
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().contiguous()
            array = (array.view(torch.int16) if array.dtype == torch.bfloat16 else array).numpy()  # numpy has no bf16
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def entry_folder(kind: str, identity: dict) -> Path:
    """The cache folder of the ``kind`` entry (``models``, ``language``, ...) described by ``identity``."""
    return cache_root() / kind / content_hash(identity)


def read_entry(folder: Path, identity: dict) -> dict | None:
    """The info recorded with a complete entry made from ``identity``, or None (missing, or stale)."""
    try:
        recorded = json.loads((folder / IDENTITY_FILE).read_text())
        info = json.loads((folder / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if _canonical(recorded) == _canonical(identity) else None


def cached_entry(folder: Path, identity: dict, build: Callable[[Path], dict]) -> tuple[dict, bool]:
    """``(info, hit)`` of the entry at ``folder`` made from ``identity``: read when complete and made from the
    same identity, otherwise built by ``build(staging_folder) -> info`` and moved into place atomically."""
    info = read_entry(folder, identity)
    if info is not None:
        return info, True
    return write_entry(folder, identity, build), False


def write_entry(folder: Path, identity: dict, build: Callable[[Path], dict]) -> dict:
    """Build the entry in a staging folder beside ``folder`` and rename it into place (replacing a stale one)."""
    folder = Path(folder)
    staging = folder.with_name(f".{folder.name}.building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        info = build(staging) or {}
        (staging / IDENTITY_FILE).write_text(json.dumps(identity, indent=1, sort_keys=True, default=str))
        (staging / INFO_FILE).write_text(json.dumps(info, indent=1, default=str))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info


def _identity_file(path: Path) -> Path:
    return path.with_name(path.name + ".identity.json")


def read_file_entry(path: Path, identity: dict) -> bool:
    """Whether the single file ``path`` (a stage's product inside a run folder) was made from ``identity``."""
    try:
        recorded = json.loads(_identity_file(Path(path)).read_text())
    except (OSError, ValueError):
        return False
    return Path(path).is_file() and _canonical(recorded) == _canonical(identity)


def write_file_entry(path: Path, identity: dict, write: Callable[[Path], None]) -> None:
    """``write(staging_path)`` then rename it to ``path`` and record ``identity`` beside it, last: an interrupted
    write leaves no file that claims to be made from ``identity``."""
    path = Path(path)
    _identity_file(path).unlink(missing_ok=True)  # whatever is there now was made from something else
    staging = path.with_name(f".building-{os.getpid()}-{path.name}")  # same suffix: writers may check it
    try:
        write(staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    record = _identity_file(path).with_name(f".building-{os.getpid()}-{_identity_file(path).name}")
    record.write_text(json.dumps(identity, indent=1, sort_keys=True, default=str))
    os.replace(record, _identity_file(path))


def cached_tensors(kind: str, identity: dict,
                   build: Callable[[], tuple[dict[str, torch.Tensor], dict]]) -> tuple[dict[str, torch.Tensor], dict]:
    """Named tensors (and their info) made once per ``identity``: render sets, generated data."""
    folder = entry_folder(kind, identity)

    def write(staging: Path) -> dict:
        tensors, info = build()
        save_weights_file(staging / "tensors.safetensors", tensors)
        return info

    info, _ = cached_entry(folder, identity, write)
    return load_weights_file(folder / "tensors.safetensors"), info


def store_cached(model: nn.Module, spec: dict, info: dict) -> Path:
    """Write ``model``'s weights and ``info`` as the cache entry of ``spec``."""
    folder = entry_folder("models", spec)

    def write(staging: Path) -> dict:
        save_weights_file(staging / WEIGHTS_FILE, model.state_dict())
        return info

    write_entry(folder, spec, write)
    return folder


def data_identity(section: dict, splits) -> dict:
    """A recipe's data section for a cache key, plus the content fingerprint of user files
    (``splits.extra["fingerprint"]``): a file overwritten under the same name is new data."""
    fingerprint = splits.extra.get("fingerprint")
    return section if fingerprint is None else {**section, "fingerprint": fingerprint}


def fit_or_load(model: nn.Module, spec: dict, fit: Callable[[], dict]) -> tuple[dict, bool]:
    """``(info, cached)``: ``model`` loaded from the cache, or ``fit()`` (which trains it in place and
    returns its info) and then stored. An entry that exists but cannot be loaded (damaged, or written for
    another architecture) is reported and refitted, never trusted."""
    folder = entry_folder("models", spec)
    info = read_entry(folder, spec)
    if info is not None:
        try:
            model.load_state_dict(load_weights_file(folder / WEIGHTS_FILE))
            return info, True
        except (CheckpointError, RuntimeError, ValueError) as err:
            warnings.warn(f"the cached model at {folder} could not be loaded ({str(err).splitlines()[0]}); "
                          "it is trained again and the entry replaced.", stacklevel=2)
    info = fit()
    store_cached(model, spec, info)
    return info, False
