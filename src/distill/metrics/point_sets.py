"""Point sets: the Chamfer distance (batched and differentiable: a loss) and the generation metrics it defines.

The Chamfer distance here is the one point-cloud generation papers score with (Achlioptas et al., ICML
2018; PointFlow, Yang et al., ICCV 2019; PSF, Wu et al., CVPR 2023): squared nearest-neighbour distances
averaged over each set, both ways summed, ``CD(A, B) = mean_a min_b |a − b|² + mean_b min_a |a − b|²``.
(:func:`distill.scenes.chamfer_distance` is another convention: Euclidean, halved, for a reconstructed
surface against a mesh.) From a matrix of Chamfer distances between generated sets ``S_g`` and real sets
``S_r`` (PointFlow, section 5):

- MMD-CD: ``mean_{Y ∈ S_r} min_{X ∈ S_g} CD(X, Y)``, how close the real sets' nearest generated sets are;
- COV: the share of real sets that are the nearest real set of some generated set (mode coverage);
- 1-NNA: the leave-one-out accuracy of the 1-nearest-neighbour classifier telling ``S_g`` from ``S_r``
  (0.5 when they are indistinguishable, 1 when every set's nearest neighbour is of its own kind).

:class:`~distill.metrics.excess.ChamferExcess` is MMD-CD's excess over the floor between two real draws.
"""

from __future__ import annotations

import torch
from torch import Tensor

from distill.errors import DistillError

#: the point-set metrics a scored row holds (beside the excess)
POINT_SET_METRICS = ("mmd_cd", "cov", "nna")


def _check_sets(name: str, x: object) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[1] == 0:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise DistillError(f"{name} must be point sets (B, N, D) with N >= 1 points of D coordinates, got {got}.")
    return x


def chamfer(a: Tensor, b: Tensor) -> Tensor:
    """``(B,)`` Chamfer distances of the point sets ``a`` ``(B, N, D)`` and ``b`` ``(B, M, D)``, pair by pair:
    ``mean_i min_j |a_i − b_j|² + mean_j min_i |a_i − b_j|²``; differentiable (the gradient flows through
    each point's nearest neighbour), so it is a loss that ignores the order of the points."""
    a, b = _check_sets("a", a), _check_sets("b", b)
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
        raise DistillError(f"chamfer compares sets pair by pair: a {tuple(a.shape)} and b {tuple(b.shape)} need "
                           "the same batch size and coordinates.")
    squared = (a[:, :, None, :] - b[:, None, :, :]).square().sum(-1)  # (B, N, M), exact (no |a|²+|b|²−2ab)
    return squared.amin(dim=2).mean(dim=1) + squared.amin(dim=1).mean(dim=1)


#: point distances in one block of :func:`pairwise_chamfer` (16 MiB of float32)
BLOCK_ENTRIES = 2**22


@torch.no_grad()
def pairwise_chamfer(x: Tensor, y: Tensor) -> Tensor:
    """``(len(x), len(y))`` Chamfer distances (float64) between every set of ``x`` ``(n, N, D)`` and of ``y``
    ``(m, M, D)``. Per block of rows of ``x`` (:data:`BLOCK_ENTRIES` distances) one ``cdist`` between all
    their points and all of ``y``'s, in float32 (off by ~1e-6 of the sets' squared extent), and the nearest
    distances squared after the minimum: a few passes over memory, which is what this costs on a CPU."""
    x, y = _check_sets("x", x).float(), _check_sets("y", y).float().to(x.device)
    (_, points, dims), (m, others, y_dims) = x.shape, y.shape
    if dims != y_dims:
        raise DistillError(f"pairwise_chamfer compares sets of one space: x {tuple(x.shape)}, y {tuple(y.shape)}.")
    chunk = max(1, BLOCK_ENTRIES // (m * points * others))
    flat_y = y.reshape(m * others, dims)
    rows = []
    for block in x.split(chunk):
        distances = torch.cdist(block.reshape(-1, dims), flat_y).view(len(block), points, m, others)
        rows.append(distances.amin(dim=3).square().mean(dim=1) + distances.amin(dim=1).square().mean(dim=2))
    return torch.cat(rows).double()


def _without_self(distances: Tensor) -> Tensor:
    return distances + torch.diag(torch.full((len(distances),), torch.inf, dtype=distances.dtype,
                                             device=distances.device))


def point_set_metrics(to_real: Tensor, among_generated: Tensor, among_real: Tensor) -> dict[str, float]:
    """MMD-CD, COV and 1-NNA from Chamfer matrices: ``to_real`` (generated × real), ``among_generated`` and
    ``among_real`` (each set against its own kind, the diagonal ignored: leave one out)."""
    n_g, n_r = to_real.shape
    if among_generated.shape != (n_g, n_g) or among_real.shape != (n_r, n_r) or min(n_g, n_r) < 2:
        raise DistillError(f"point_set_metrics needs matrices (n_g, n_r), (n_g, n_g), (n_r, n_r) with n >= 2, got "
                           f"{tuple(to_real.shape)}, {tuple(among_generated.shape)}, {tuple(among_real.shape)}.")
    mmd = to_real.amin(dim=0).mean()
    coverage = to_real.argmin(dim=1).unique().numel() / n_r
    # a set is classified right when its nearest other set is of its own kind (ties count as wrong)
    generated_right = _without_self(among_generated).amin(dim=1) < to_real.amin(dim=1)
    real_right = _without_self(among_real).amin(dim=1) < to_real.amin(dim=0)
    nna = (generated_right.sum() + real_right.sum()) / (n_g + n_r)
    return {"mmd_cd": float(mmd), "cov": float(coverage), "nna": float(nna)}
