"""2-D toy distributions for diffusion and flow models, in the style of FFJORD's ``toy_data``.

Every sampler is ``fn(n, generator) -> (n, 2) float32`` and draws only from
``generator``, so a seed fixes the points. All four live roughly in [-3, 3]²
with a per-axis standard deviation near 1–1.5, so one noise schedule fits them all:

- ``8gaussians``: centres 2·(±1, 0), 2·(0, ±1), 2·(±1/√2, ±1/√2) (radius 2), std 0.1.
- ``checkerboard``: uniform on the 8 "black" unit squares of the 4×4 board in
  [-2, 2]², those with ``floor(x) + floor(y)`` even (Grathwohl et al. 2019, FFJORD).
- ``moons``: sklearn's two half circles (outer: (cos θ, sin θ); inner:
  (1 − cos θ, 0.5 − sin θ), θ ~ U[0, π]) plus noise of std 0.05, centred at
  (0.5, 0.25) and scaled by 1.5, so x ∈ [-2.25, 2.25].
- ``swissroll``: sklearn's ``make_swiss_roll`` (x, z) plane, (t cos t, t sin t)
  with t ~ U[1.5π, 4.5π], divided by 5 (as FFJORD), plus noise of std 0.1.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import torch
from torch import Tensor

from distill.data.base import DataSplits
from distill.data.tensors import InMemoryDataset
from distill.errors import check_count
from distill.registry import Registry

ToySampler = Callable[[int, torch.Generator], Tensor]

TOYS: Registry[ToySampler] = Registry("toy distribution")

#: the 8 mode centres of ``8gaussians`` (radius 2) and their standard deviation
EIGHT_GAUSSIAN_CENTRES = 2.0 * torch.tensor(
    [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]
    + [[sx / math.sqrt(2), sy / math.sqrt(2)] for sx in (1.0, -1.0) for sy in (1.0, -1.0)]
)
EIGHT_GAUSSIAN_STD = 0.1

#: ``moons``: raw sklearn coordinates are shifted by ``-MOONS_CENTRE`` and scaled by ``MOONS_SCALE``
MOONS_CENTRE, MOONS_SCALE, MOONS_NOISE = (0.5, 0.25), 1.5, 0.05
SWISSROLL_NOISE = 0.1


@TOYS.register("8gaussians")
def eight_gaussians(n: int, generator: torch.Generator) -> Tensor:
    """Eight isotropic Gaussians (std 0.1) evenly spaced on a circle of radius 2."""
    mode = torch.randint(0, 8, (n,), generator=generator)
    noise = torch.randn(n, 2, generator=generator)
    return EIGHT_GAUSSIAN_CENTRES[mode] + EIGHT_GAUSSIAN_STD * noise


@TOYS.register("checkerboard")
def checkerboard(n: int, generator: torch.Generator) -> Tensor:
    """Uniform on the 8 squares of a 4×4 checkerboard in [-2, 2]² with floor(x)+floor(y) even."""
    col = torch.randint(0, 4, (n,), generator=generator)  # floor(x) + 2
    row = 2 * torch.randint(0, 2, (n,), generator=generator) + col % 2  # floor(y) + 2, same parity
    cell = torch.stack([col, row], dim=1).float() - 2.0
    return cell + torch.rand(n, 2, generator=generator)


@TOYS.register("moons")
def moons(n: int, generator: torch.Generator) -> Tensor:
    """Two interleaving half circles (sklearn's ``make_moons``), noise 0.05, centred, scaled 1.5."""
    inner = torch.rand(n, generator=generator) < 0.5
    theta = math.pi * torch.rand(n, generator=generator)
    outer = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    flipped = torch.stack([1.0 - torch.cos(theta), 0.5 - torch.sin(theta)], dim=1)
    points = torch.where(inner[:, None], flipped, outer)
    points = points + MOONS_NOISE * torch.randn(n, 2, generator=generator)
    return MOONS_SCALE * (points - torch.tensor(MOONS_CENTRE))


@TOYS.register("swissroll")
def swissroll(n: int, generator: torch.Generator) -> Tensor:
    """sklearn's swiss roll in its (x, z) plane, t ∈ [1.5π, 4.5π], divided by 5, noise 0.1."""
    t = 1.5 * math.pi * (1.0 + 2.0 * torch.rand(n, generator=generator))
    points = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 5.0
    return points + SWISSROLL_NOISE * torch.randn(n, 2, generator=generator)


def sample_toy(name: str, n: int, seed: int = 0) -> Tensor:
    """``n`` points of the toy distribution ``name`` as an (n, 2) float32 tensor; fixed by ``seed``."""
    sampler = TOYS.get(name)
    check_count("n (the number of points)", n)
    points = sampler(n, torch.Generator().manual_seed(seed))
    return points.to(torch.float32).contiguous()


def _stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for the named ``stream`` of ``seed``: train and test never share draws."""
    digest = hashlib.blake2b(f"{seed}:{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def toy_dataset(name: str, n_train: int, n_test: int, seed: int = 0) -> DataSplits:
    """Train/test splits of the toy ``name``: unconditional (every label 0), ``input_shape`` (2,).

    Train and test come from independent random streams derived from ``seed``,
    so the test points are fresh draws and do not depend on ``n_train``.
    """
    TOYS.get(name)
    check_count("n_train", n_train)
    check_count("n_test", n_test)
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = sample_toy(name, n, _stream_seed(seed, split))
        splits[split] = InMemoryDataset(x, torch.zeros(n, dtype=torch.long))
    return DataSplits(
        train=splits["train"], test=splits["test"], input_shape=(2,), num_classes=1,
        name=f"toy:{name}",
    )


__all__ = ["TOYS", "sample_toy", "toy_dataset"]
