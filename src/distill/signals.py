"""Where teacher outputs come from: the live teacher, or a cache written once.

:class:`CachedTeacher` answers exactly like the live teacher (same module paths, so
the same taps work) from memory-mapped float16 arrays written by
:func:`build_teacher_cache`. Each input is found by an exact fingerprint of its
bytes, so an input that was not cached — a randomly augmented view, a different
dataset — is refused with a clear error instead of silently getting a stale target
(the pitfall DistillKit's offline signals document).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from distill.data import collate_batches
from distill.errors import DistillError
from distill.taps import TapRecorder, TapSpec, parse_tap

_FORMAT = "distill-teacher-cache-v1"
_COEFFS_SEED = 20241126


def input_fingerprints(x: torch.Tensor) -> torch.Tensor:
    """One int64 per sample, a function of its exact bytes (integer arithmetic: order-independent, exact)."""
    flat = x.detach().contiguous().view(x.shape[0], -1)
    bits = flat.float().view(torch.int32).long() if flat.is_floating_point() else flat.long()
    generator = torch.Generator().manual_seed(_COEFFS_SEED)
    coeffs = torch.randint(1, 2**62, (bits.shape[1],), generator=generator).to(bits.device) | 1
    return (bits * coeffs).sum(dim=1) ^ (bits.sum(dim=1) << 32)


def _file_name(spec: TapSpec) -> str:
    return (str(spec) or "output").replace("/", "_") + ".f16"


@torch.no_grad()
def build_teacher_cache(
    teacher: nn.Module, dataset: Dataset, folder: Path, taps: Sequence[str] = ("output",), batch_size: int = 512
) -> Path:
    """Run ``teacher`` once over ``dataset`` (in order, eval mode) and store the tapped tensors in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specs = [parse_tap(t) for t in taps]
    if any(spec.index is not None for spec in specs):
        raise DistillError("cache taps cannot select a tuple element ('[i]'); tap the submodule that returns the tensor.")
    recorder = TapRecorder(teacher, specs, role="teacher")
    teacher.eval()
    arrays: dict[TapSpec, np.memmap] = {}
    keys = []
    start = 0
    try:
        for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_batches):
            recorder.clear()
            teacher(x)
            keys.append(input_fingerprints(x))
            for spec in specs:
                value = recorder.get(spec).float().cpu().numpy().astype(np.float16)
                if spec not in arrays:
                    arrays[spec] = np.lib.format.open_memmap(
                        folder / _file_name(spec), mode="w+", dtype=np.float16, shape=(len(dataset), *value.shape[1:]))
                arrays[spec][start:start + len(value)] = value
            start += len(x)
    finally:
        recorder.remove()
    for array in arrays.values():
        array.flush()
    all_keys = torch.cat(keys)
    if len(set(all_keys.tolist())) != len(all_keys):
        raise DistillError("the dataset holds identical inputs twice; a teacher cache needs distinct inputs.")
    np.save(folder / "keys.npy", all_keys.numpy())
    meta = {"format": _FORMAT, "size": len(dataset), "taps": {str(s): _file_name(s) for s in specs}}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return folder


class _Emit(nn.Module):
    """Stands where a cached module stood: returns what it is given, so hooks on its path fire."""

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return value


class CachedTeacher(nn.Module):
    """A stand-in teacher serving cached outputs; refuses inputs it has not seen."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        folder = Path(folder)
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError):
            raise DistillError(f"{folder} is not a teacher cache (no readable meta.json); build one with build_teacher_cache.") from None
        if meta.get("format") != _FORMAT:
            raise DistillError(f"{folder} holds a teacher cache of another format ({meta.get('format')!r}).")
        keys = np.load(folder / "keys.npy")
        self._row = {int(k): i for i, k in enumerate(keys)}
        self._arrays = {parse_tap(t): np.load(folder / name, mmap_mode="r") for t, name in meta["taps"].items()}
        for spec in self._arrays:
            if spec.path:
                self._plant(spec.path)

    def _plant(self, path: str) -> None:
        node: nn.Module = self
        for part in path.split("."):
            if not hasattr(node, part):
                node.add_module(part, _Emit())
            node = getattr(node, part)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keys = input_fingerprints(x).tolist()
        missing = sum(k not in self._row for k in keys)
        if missing:
            raise DistillError(
                f"{missing} of {len(keys)} inputs are not in the teacher cache: the inputs are randomly augmented "
                "or come from another dataset. Cached teacher outputs are only valid for the exact cached inputs; "
                "use the live teacher for augmented data."
            )
        rows = np.array([self._row[k] for k in keys])
        output = None
        for spec, array in self._arrays.items():
            value = torch.from_numpy(np.asarray(array[rows], dtype=np.float32)).to(x.device)
            if spec.path:
                self.get_submodule(spec.path)(value)
            else:
                output = value
        if output is None:
            raise DistillError("this teacher cache holds no 'output' tap; rebuild it with taps including 'output'.")
        return output
