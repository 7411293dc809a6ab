"""A dense cache of a teacher's tapped outputs, written once: any family's teacher, any tap.

:class:`CachedTeacher` answers like the live teacher (same module paths, so the same
taps work) from memory-mapped float16 arrays written by :func:`build_teacher_cache`.
Each input is found by a 64-bit fingerprint, a hash of its exact bytes, so an input
that was not cached — a randomly augmented view, a different dataset — is refused
with a clear error instead of silently getting a stale target (the pitfall
DistillKit's offline signals document). Being a hash, two different inputs can
share a fingerprint, with odds of about n²/2^64 among n inputs; the build refuses a
dataset in which two inputs share one.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from distill.data import collate_batches
from distill.errors import DistillError
from distill.signals.base import TeacherSignal
from distill.taps import TapRecorder, TapSpec, parse_tap

_FORMAT = "distill-teacher-cache-v1"
_COEFFS_SEED = 20241126


@functools.lru_cache(maxsize=32)
def _coefficients(width: int, device: torch.device) -> torch.Tensor:
    """The fingerprint's odd int64 coefficients for inputs of ``width`` elements, drawn once per width and device."""
    generator = torch.Generator().manual_seed(_COEFFS_SEED)
    return (torch.randint(1, 2**62, (width,), generator=generator) | 1).to(device)


def input_fingerprints(x: torch.Tensor) -> torch.Tensor:
    """One int64 per sample: a 64-bit hash of its exact bytes, on ``x``'s device.

    Integer arithmetic that wraps the same way on every device, so the key does not
    depend on the device or on the order of the samples in the batch.
    """
    flat = x.detach().reshape(len(x), math.prod(x.shape[1:]))
    if flat.dtype == torch.float64:
        bits = flat.view(torch.int64)
    elif flat.is_floating_point():
        bits = flat.float().view(torch.int32).long()  # every narrower float is exact in float32
    else:
        bits = flat.long()
    coeffs = _coefficients(bits.shape[1], bits.device)
    return (bits * coeffs).sum(dim=1) ^ (bits.sum(dim=1) << 32)


def _file_name(spec: TapSpec) -> str:
    return (str(spec) or "output").replace("/", "_") + ".f16"


def _signature(x: torch.Tensor) -> tuple[list[int], str]:
    """Per-sample shape and dtype name of a batch, as recorded in a cache's meta.json."""
    return list(x.shape[1:]), str(x.dtype).removeprefix("torch.")


def _device_of(module: nn.Module) -> torch.device:
    tensor = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    return torch.device("cpu") if tensor is None else tensor.device


def _check_distinct(keys: np.ndarray) -> None:
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    same = np.flatnonzero(ordered[1:] == ordered[:-1])
    if len(same):
        first, second = sorted(order[[same[0], same[0] + 1]])
        raise DistillError(
            f"the dataset holds identical inputs (samples {first} and {second}, {len(same)} repeat(s) in all); "
            "a teacher cache needs distinct inputs, so drop the repeats (if the two differ, drop one: they "
            "share a 64-bit fingerprint, a very rare hash collision)."
        )


@torch.no_grad()
def build_teacher_cache(
    teacher: nn.Module, dataset: Dataset, folder: Path, taps: Sequence[str] = ("output",), batch_size: int = 512
) -> Path:
    """Run ``teacher`` once over ``dataset`` (in order, eval mode, on the teacher's device) and store the tapped
    tensors in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specs = [parse_tap(t) for t in taps]
    if any(spec.index is not None for spec in specs):
        raise DistillError("cache taps cannot select a tuple element ('[i]'); tap the submodule that returns the tensor.")
    if len(dataset) == 0:
        raise DistillError("the dataset is empty; a teacher cache needs at least one input.")
    (folder / "meta.json").unlink(missing_ok=True)  # a build that fails must not leave an older cache's meta behind
    device = _device_of(teacher)
    recorder = TapRecorder(teacher, specs, role="teacher")
    teacher.eval()
    arrays: dict[TapSpec, np.memmap] = {}
    keys = []
    start = 0
    try:
        for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_batches):
            recorder.clear()
            teacher(x.to(device))
            keys.append(input_fingerprints(x).cpu())
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
    all_keys = torch.cat(keys).numpy()
    _check_distinct(all_keys)
    np.save(folder / "keys.npy", all_keys)
    shape, dtype = _signature(x)  # of the last batch; every batch has the same
    meta = {"format": _FORMAT, "size": len(dataset), "taps": {str(s): _file_name(s) for s in specs},
            "input_shape": shape, "input_dtype": dtype}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return folder


class _Emit(nn.Module):
    """Stands where a cached module stood: returns what it is given, so hooks on its path fire."""

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return value


class CachedTeacher(nn.Module, TeacherSignal):
    """A stand-in teacher serving cached outputs on the input's device; refuses inputs it has not seen.

    As a module it replaces the teacher in a :class:`~distill.distiller.Distiller` (its cached
    taps fire as the teacher's would); as a :class:`TeacherSignal` it answers
    :meth:`for_batch` with the cached output of the batch's ``key`` entry.
    """

    def __init__(self, folder: Path, key: str = "x") -> None:
        super().__init__()
        self.key = key
        folder = Path(folder)
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError):
            raise DistillError(f"{folder} is not a teacher cache (no readable meta.json); build one with build_teacher_cache.") from None
        if meta.get("format") != _FORMAT:
            raise DistillError(f"{folder} holds a teacher cache of another format ({meta.get('format')!r}); rebuild it "
                               "with build_teacher_cache.")
        try:
            keys = np.load(folder / "keys.npy")
            arrays = {parse_tap(t): np.load(folder / name, mmap_mode="r").view(np.ndarray) for t, name in meta["taps"].items()}
        except OSError as error:
            raise DistillError(f"the teacher cache in {folder} is incomplete ({error}); rebuild it with build_teacher_cache.") from None
        sizes = {len(keys), *(len(a) for a in arrays.values())}
        if sizes != {meta["size"]}:
            raise DistillError(f"the teacher cache in {folder} is inconsistent: meta.json says {meta['size']} inputs, its "
                               f"arrays hold {sorted(sizes)}; rebuild it with build_teacher_cache.")
        if all(spec.path for spec in arrays):
            raise DistillError("this teacher cache holds no 'output' tap; rebuild it with taps including 'output'.")
        self._order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[self._order]
        self._arrays = arrays
        self._input = (meta.get("input_shape"), meta.get("input_dtype"))  # absent in caches written before they were recorded
        for spec in arrays:
            if spec.path:
                self._plant(spec.path)

    def _plant(self, path: str) -> None:
        node: nn.Module = self
        for part in path.split("."):
            if not hasattr(node, part):
                node.add_module(part, _Emit())
            node = getattr(node, part)

    def _rows(self, x: torch.Tensor) -> np.ndarray:
        """The cache row of each sample of ``x``; refuses any sample that was not cached."""
        shape, dtype = self._input
        got = _signature(x)
        if shape is not None and got != (shape, dtype):
            raise DistillError(
                f"this teacher cache was built from {dtype} inputs of shape {tuple(shape)}, got {got[1]} inputs of "
                f"shape {tuple(got[0])}; pass the inputs it was built from, or rebuild it for these."
            )
        keys = input_fingerprints(x).cpu().numpy()
        where = np.minimum(np.searchsorted(self._sorted_keys, keys), len(self._sorted_keys) - 1)
        missing = np.count_nonzero(self._sorted_keys[where] != keys)
        if missing:
            raise DistillError(
                f"{missing} of {len(keys)} inputs are not in the teacher cache: the inputs are randomly augmented "
                "or come from another dataset. Cached teacher outputs are only valid for the exact cached inputs; "
                "use the live teacher for augmented data."
            )
        return self._order[where]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self._rows(x)
        output = None
        for spec, array in self._arrays.items():
            value = torch.from_numpy(array.take(rows, axis=0)).to(x.device, torch.float32)
            if spec.path:
                self.get_submodule(spec.path)(value)
            else:
                output = value
        return output

    def for_batch(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.key not in batch:
            raise DistillError(f"this teacher cache serves batches by their {self.key!r} entry; the batch has "
                               f"{', '.join(map(repr, batch))}.")
        return self(batch[self.key])
