"""Checkpoints: safetensors weights plus optimizer, scheduler and RNG state, written atomically.

Layout of ``run_dir/checkpoints/step_000123/``: ``weights.safetensors``,
``state.pt`` (optimizer, scheduler, RNG; read back with ``weights_only=True``, never
plain pickle) and ``meta.json`` (format tag, step, weight names and shapes).
A checkpoint is written to a temporary folder and renamed into place, so a crash
never leaves a half-written one; ``latest`` names the newest complete checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from distill.errors import CheckpointError

FORMAT = "distill-checkpoint-v1"


@dataclass
class Checkpoint:
    """What a checkpoint restores."""

    step: int
    weights: dict[str, torch.Tensor]
    state: dict
    meta: dict


def rng_state() -> dict:
    """The global torch generators' states (CPU, and every CUDA device when there is one)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def untie(weights: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """CPU copies of ``weights`` with each shared tensor kept once, and ``{alias: kept name}``.

    Models with tied weights (a language model's input and output embeddings) hold one
    tensor under two names; safetensors refuses to write shared memory, so the second
    name is stored as an alias and restored by :func:`retie`.
    """
    tensors, aliases, seen = {}, {}, {}
    for name, value in weights.items():
        key = (value.data_ptr(), tuple(value.shape), tuple(value.stride()), value.dtype, value.device)
        if value.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = value.detach().to("cpu", copy=True).contiguous()  # one copy, never shared memory
    return tensors, aliases


def retie(tensors: dict[str, torch.Tensor], aliases: dict[str, str]) -> dict[str, torch.Tensor]:
    """``tensors`` with every alias of :func:`untie` pointing at its kept tensor again."""
    return {**tensors, **{alias: tensors[kept] for alias, kept in aliases.items()}}


def save_weights_file(path: Path, weights: dict[str, torch.Tensor]) -> Path:
    """Write ``weights`` (tied ones once) as a ``.safetensors`` file, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors, aliases = untie(weights)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"distill_aliases": json.dumps(aliases)})
    os.replace(tmp, path)
    return path


def _signature(weights: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {name: list(t.shape) for name, t in weights.items()}


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(
    folder: Path, step: int, weights: dict[str, torch.Tensor], state: dict, extra_meta: dict | None = None, keep: int = 2
) -> Path:
    """Write checkpoint ``step`` under ``folder`` atomically and keep only the newest ``keep``."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step_{step:07d}"
    tmp = folder / f".step_{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_weights_file(tmp / "weights.safetensors", weights)
    torch.save(state, tmp / "state.pt")
    meta = {"format": FORMAT, "step": step, "weights": _signature(weights), **(extra_meta or {})}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _write_atomically(folder / "latest", final.name)
    for old in sorted(p for p in folder.glob("step_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint under ``folder``, or None."""
    pointer = folder / "latest"
    if pointer.exists():
        candidate = folder / pointer.read_text().strip()
        if (candidate / "meta.json").exists():
            return candidate
    complete = sorted(p for p in folder.glob("step_*") if (p / "meta.json").exists())
    return complete[-1] if complete else None


def load_checkpoint(path: Path, expected: dict[str, torch.Tensor] | None = None) -> Checkpoint:
    """Read a checkpoint folder, refusing foreign, corrupt or mismatched ones with a clear message.

    ``expected``: the current model's weights; names and shapes must match.
    """
    path = Path(path)
    meta_file = path / "meta.json"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a distill checkpoint (cannot read meta.json: {err}).") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} was not written by distill (format {meta.get('format')!r}, expected {FORMAT!r}).")
    try:
        weights = _read_weights(path / "weights.safetensors")
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except (OSError, SafetensorError, RuntimeError, EOFError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(err).__name__}: {err}); "
                              "delete it to resume from an older one, or start afresh.") from None
    if _signature(weights) != meta["weights"]:
        raise CheckpointError(f"checkpoint {path} is corrupt: its weights do not match its meta.json.")
    if expected is not None and _signature(weights) != _signature(expected):
        missing = sorted(set(expected) - set(weights))[:3]
        unexpected = sorted(set(weights) - set(expected))[:3]
        changed = sorted(k for k in set(weights) & set(expected) if list(weights[k].shape) != list(expected[k].shape))[:3]
        raise CheckpointError(
            f"checkpoint {path} belongs to a different model: missing {missing}, unexpected {unexpected}, "
            f"different shapes {changed}. Resume with the same recipe, or start a new run folder."
        )
    return Checkpoint(step=int(meta["step"]), weights=weights, state=state, meta=meta)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as handle:
        aliases = json.loads((handle.metadata() or {}).get("distill_aliases", "{}"))
    return retie(tensors, aliases)


def load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a bare ``.safetensors`` weights file (or the weights of a checkpoint folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "weights.safetensors"
    try:
        return _read_weights(path)
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f"cannot read weights from {path} ({err}); expected a .safetensors file "
                              "or a distill checkpoint folder.") from None


def weights_for(module: torch.nn.Module, weights: dict[str, torch.Tensor], source: Path | str) -> dict[str, torch.Tensor]:
    """The entries of ``weights`` that belong to ``module``: all of them, or those under the one
    prefix (``distiller.student.``, ``model.``, ...) that a run's checkpoint stores it under. Names
    or shapes that do not match are refused naming the first few."""
    expected = module.state_dict()
    chosen = None
    if set(expected) <= set(weights):
        chosen = {k: weights[k] for k in expected}
    anchor = next(iter(expected), None)
    prefixes = sorted({k[: -len(anchor)] for k in weights if anchor is not None and k.endswith("." + anchor)}, key=len)
    for prefix in prefixes if chosen is None else ():
        if all(prefix + k in weights for k in expected):
            chosen = {k: weights[prefix + k] for k in expected}
            break
    if chosen is None:
        missing = sorted(set(expected) - set(weights))[:3]
        unexpected = sorted(set(weights) - set(expected))[:3]
        raise CheckpointError(f"the weights in {source} do not hold this model: missing {missing}, unexpected "
                              f"{unexpected} (and no prefix such as 'model.' holds all of its weights); they must "
                              "come from the same architecture with the same options, e.g. the run's student file "
                              "or one of its checkpoint folders.")
    changed = [f"{k} {tuple(chosen[k].shape)} in the file but {tuple(v.shape)} in the model"
               for k, v in expected.items() if chosen[k].shape != v.shape]
    if changed:
        raise CheckpointError(f"the weights in {source} do not fit this model: {'; '.join(changed[:3])}"
                              f"{f' (and {len(changed) - 3} more)' if len(changed) > 3 else ''}; check the model's "
                              "options (widths, number of classes).")
    return chosen
