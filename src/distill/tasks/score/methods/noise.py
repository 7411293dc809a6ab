"""Noise that several guidances share: a fixed noise per particle and deterministic DDIM paths."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from distill.errors import ConfigError


class FixedNoise:
    """One fixed ε*_i ~ N(0, I) per particle id i, a function of (``seed``, i, shape) only: drawn from
    its own ``torch.Generator``, seeded with ``SeedSequence(seed, spawn_key=(i,))``'s 32-bit state (the
    CPU generator keeps 32 bits of a seed, so (seed, i) is hashed, not packed), the first time the id is
    seen, then kept (a lazily grown bank on the CPU): the same particle gets the same noise in every
    call, whatever batch it comes in and whatever the global RNG has done."""

    def __init__(self, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
            raise ConfigError(f"seed must be an integer in [0, 2^31), got {seed!r}.")
        self.seed = seed
        self.bank: dict[tuple[int, tuple[int, ...]], Tensor] = {}

    def __call__(self, index: Tensor | None, like: Tensor, method: str) -> Tensor:
        """ε* for the particles ``index`` (B,), shaped and placed like ``like`` (B, ...)."""
        if index is None:
            raise ConfigError(f"{method} keeps one fixed noise per particle and needs the particles' ids: call "
                              "its loss/update with index=<(B,) integer tensor> (ParticlesObjective passes "
                              "batch['index']).")
        index = torch.as_tensor(index)
        if index.shape != (len(like),) or index.is_floating_point() or bool((index < 0).any()):
            raise ConfigError(f"{method}: index must be {len(like)} non-negative integer particle ids, one per "
                              f"row of x, got shape {tuple(index.shape)} and dtype {index.dtype}.")
        shape = tuple(like.shape[1:])
        rows = [self._noise(i, shape) for i in index.tolist()]
        return torch.stack(rows).to(device=like.device, dtype=like.dtype)

    def _noise(self, i: int, shape: tuple[int, ...]) -> Tensor:
        key = (i, shape)
        if key not in self.bank:
            state = int(np.random.SeedSequence(self.seed, spawn_key=(i,)).generate_state(1)[0])
            generator = torch.Generator().manual_seed(state)
            self.bank[key] = torch.randn(shape, generator=generator)
        return self.bank[key]


def ddim_path(prior, x: Tensor, times: list[Tensor], y: Tensor | None) -> tuple[Tensor, Tensor]:
    """Deterministic DDIM steps (Song et al., ICLR 2021) ``x_b = α_b x̂0(x_a, a) + σ_b ε̂(x_a, a)`` through
    the per-sample times ``times[0] → times[1] → …`` (each (B,)); a step to a later time is DDIM
    inversion, a step between equal times leaves x as it is. Returns the end point and ε̂ at the start
    of the last step. One ``prior.split`` per step (for the flow process DDIM is exactly Euler)."""
    if len(times) < 2:
        raise ValueError("ddim_path needs at least two times.")
    eps = None
    for a, b in zip(times[:-1], times[1:]):
        x0, eps = prior.split(x, a, y)
        x = prior.process.noise(x0, eps, b)
    return x, eps
