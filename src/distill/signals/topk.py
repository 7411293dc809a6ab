"""An offline cache of a language teacher's top-k log-probabilities plus tail mass, per token.

A live 100M+ teacher is the slowest part of every distillation step on a CPU, and its full
distribution (tens of thousands of floats per token) is too large to store; caching the k most
likely tokens is the practice of DistillKit's offline logits and of "Sparse Logit Sampling"
(Anshumann et al., ACL 2025). Entries are stored compressed — uint16 token ids (int32 for
vocabularies over 65,536) and float16 log-probabilities, 4 bytes per entry — in memory-mapped
``.npy`` arrays. The log-probabilities are those of the full distribution (not renormalised over
k), so the tail mass is ``1 − Σ exp``. A cache records what it was built from (a caller's identity
of tokenizer, text, packing and teacher, plus a hash of the token blocks) and refuses to serve
anything else: a stale cache would silently train on wrong targets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from distill.engine.cache import array_hash
from distill.engine.progress import progress_bar
from distill.errors import DistillError
from distill.losses.sparse import TopKTargets
from distill.signals.base import TeacherSignal

_FORMAT = "distill-topk-cache-v1"


def blocks_hash(blocks: Tensor) -> str:
    """A content hash of a token-block tensor's shape and int64 values."""
    return array_hash(blocks.to(torch.int64))


def _check_blocks(blocks: Tensor) -> None:
    if blocks.dim() != 2 or blocks.dtype.is_floating_point or blocks.numel() == 0:
        raise DistillError(f"token blocks must be a non-empty 2-D integer tensor (N, L), got {blocks.dtype} "
                           f"{tuple(blocks.shape)}.")


@torch.no_grad()
def build_topk_cache(teacher_logits: Callable[[Tensor], Tensor], blocks: Tensor, folder: Path, *, k: int,
                     identity: dict[str, str], temperature: float = 1.0, batch_size: int = 8,
                     progress: bool = True) -> Path:
    """Run ``teacher_logits`` (ids ``(b, L)`` → logits ``(b, L, V)``) once over ``blocks`` and store each
    position's top-``k`` log-softmax(logits / temperature) in ``folder``; ``meta.json`` is written last."""
    _check_blocks(blocks)
    if not all(isinstance(v, str) for v in identity.values()):
        raise DistillError("the cache identity maps names to strings (content hashes).")
    if not temperature > 0:
        raise DistillError(f"temperature must be > 0, got {temperature}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)  # a failed build must not leave a cache that looks valid
    count, length = blocks.shape
    indices = values = None
    tail = 0.0
    with progress_bar(f"teacher top-{k} cache", count, enabled=progress) as bar:
        for start in range(0, count, batch_size):
            ids = blocks[start:start + batch_size]
            logits = teacher_logits(ids)
            vocab = logits.shape[-1]
            if not 1 <= k < vocab:
                raise DistillError(f"k must lie in [1, {vocab}) for a vocabulary of {vocab}, got {k}.")
            logprobs = torch.log_softmax(logits.float() / temperature, dim=-1)
            top, where = logprobs.topk(k, dim=-1)
            if indices is None:
                index_dtype = np.uint16 if vocab <= 2**16 else np.int32
                indices = np.lib.format.open_memmap(folder / "indices.npy", "w+", index_dtype, (count, length, k))
                values = np.lib.format.open_memmap(folder / "logprobs.npy", "w+", np.float16, (count, length, k))
            indices[start:start + len(ids)] = where.cpu().numpy().astype(indices.dtype)
            values[start:start + len(ids)] = top.cpu().numpy().astype(np.float16)
            tail += float((1 - top.exp().sum(-1)).clamp(min=0).sum())
            bar.update(min(start + batch_size, count))
    indices.flush()
    values.flush()
    meta = {"format": _FORMAT, "blocks": count, "block_length": length, "k": k, "vocab_size": vocab,
            "temperature": temperature, "index_dtype": str(indices.dtype), "identity": identity,
            "blocks_hash": blocks_hash(blocks), "mean_tail_mass": tail / (count * length),
            "bytes_per_token": k * (indices.dtype.itemsize + 2)}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return folder


class TopKCache(TeacherSignal):
    """A built top-k cache, opened only for the ``identity`` (and ``blocks``) it was built from; as a
    :class:`TeacherSignal` it serves a batch by its ``"row"`` entry (the index of each block)."""

    def __init__(self, folder: Path, identity: dict[str, str], blocks: Tensor | None = None) -> None:
        self.folder = Path(folder)
        try:
            meta = json.loads((self.folder / "meta.json").read_text())
        except (OSError, ValueError):
            raise DistillError(f"{self.folder} is not a top-k cache (no readable meta.json); build one with "
                               "build_topk_cache.") from None
        if meta.get("format") != _FORMAT:
            raise DistillError(f"{self.folder} holds a cache of another format ({meta.get('format')!r}); rebuild it.")
        built = meta["identity"]
        for name in sorted(set(built) | set(identity)):
            if built.get(name) != identity.get(name):
                raise DistillError(f"the {name} differs from the one this top-k cache was built with (cache "
                                   f"{built.get(name)}, now {identity.get(name)}); a stale cache would train on wrong "
                                   f"targets, so rebuild it.")
        if blocks is not None and blocks_hash(blocks) != meta["blocks_hash"]:
            raise DistillError("the text blocks (sequence packing) differ from those this top-k cache was built from; "
                               "rebuild it.")
        shape = (meta["blocks"], meta["block_length"], meta["k"])
        try:
            self._indices = np.load(self.folder / "indices.npy", mmap_mode="r")
            self._logprobs = np.load(self.folder / "logprobs.npy", mmap_mode="r")
        except (OSError, ValueError) as error:
            raise DistillError(f"the top-k cache in {self.folder} is incomplete ({error}); rebuild it.") from None
        if self._indices.shape != shape or self._logprobs.shape != shape:
            raise DistillError(f"the top-k cache in {self.folder} is inconsistent: meta.json says {shape}, its arrays "
                               f"hold {self._indices.shape} and {self._logprobs.shape}; rebuild it.")
        self.meta = meta

    def __len__(self) -> int:
        return self.meta["blocks"]

    @property
    def k(self) -> int:
        return self.meta["k"]

    @property
    def vocab_size(self) -> int:
        return self.meta["vocab_size"]

    @property
    def temperature(self) -> float:
        return self.meta["temperature"]

    @property
    def mean_tail_mass(self) -> float:
        return self.meta["mean_tail_mass"]

    @property
    def bytes_per_token(self) -> int:
        return self.meta["bytes_per_token"]

    def targets(self, rows: Tensor, device: torch.device | str | None = None) -> TopKTargets:
        """The cached top-k of the blocks ``rows`` as :class:`TopKTargets` of shape ``(b, L, k)``."""
        rows_np = rows.detach().cpu().numpy().astype(np.int64)
        if rows_np.size and (rows_np.min() < 0 or rows_np.max() >= len(self)):
            raise DistillError(f"block rows must lie in [0, {len(self)}), got {rows_np.min()}..{rows_np.max()}.")
        indices = torch.from_numpy(self._indices[rows_np].astype(np.int64))
        logprobs = torch.from_numpy(self._logprobs[rows_np].astype(np.float32))
        return TopKTargets(indices.to(device) if device else indices, logprobs.to(device) if device else logprobs,
                           self.temperature)


    def for_batch(self, batch: Mapping[str, Tensor]) -> TopKTargets:
        if "row" not in batch:
            raise DistillError("a top-k cache serves batches by their 'row' entry (each block's index in the cached "
                               f"blocks); the batch has {', '.join(map(repr, batch))}.")
        return self.targets(batch["row"], device=batch["row"].device)


def tail_mass(logits: Tensor, k: int) -> Tensor:
    """Per position, the probability outside the top-``k`` tokens of softmax(logits)."""
    return (1 - torch.softmax(logits.float(), dim=-1).topk(k, dim=-1).values.sum(-1)).clamp(min=0)


def topk_reconstruction_kl(logits: Tensor, k: int) -> Tensor:
    """Per position, KL(full ‖ reconstruction): the reconstruction keeps the top-``k`` probabilities and
    spreads the tail mass uniformly over the other V − k tokens — the error of a top-k cache."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    vocab = logp.shape[-1]
    top = logp.topk(k, dim=-1).indices
    rest = logp.scatter(-1, top, float("-inf"))
    log_tail = rest.logsumexp(-1, keepdim=True)
    uniform = log_tail - torch.log(torch.tensor(float(vocab - k)))
    p = rest.exp()
    return torch.where(p > 0, p * (rest - uniform), 0.0).sum(-1)
