"""Distances between two sets of samples, for comparing few-step students with many-step teachers.

Nothing is downloaded: distances are computed on raw samples or on features of a classifier
trained in this repository (:func:`distill.metrics.features.features`). Read every distance beside
the same distance between two independent draws of real data, the noise floor
(:class:`distill.metrics.scorer.Scorer` reports both; :mod:`distill.metrics.excess` the difference).
"""

from __future__ import annotations

from collections.abc import Sequence

import ot
import torch
from torch import Tensor

from distill.errors import DistillError, check_count
from distill.metrics.checks import as_pair


def sliced_wasserstein(x: object, y: object, projections: int = 500, seed: int = 0) -> float:
    """Sliced Wasserstein-2 distance of two clouds (n, d), (m, d) (Bonneel et al. 2015), via POT."""
    x, y = as_pair(x, y)
    n = check_count("projections", projections)
    return float(ot.sliced_wasserstein_distance(x.cpu().numpy(), y.cpu().numpy(), n_projections=n, seed=seed))


def mmd_rbf(x: object, y: object, bandwidths: Sequence[float] = (0.1, 0.2, 0.5, 1.0, 2.0)) -> float:
    """Unbiased squared MMD (Gretton et al. 2012) with a sum of RBF kernels of absolute widths σ.

    The kernel is Σ_σ exp(-‖a-b‖² / 2σ²). Being unbiased, the estimate can be slightly
    negative when both clouds come from the same distribution.
    """
    x, y = as_pair(x, y)
    sigmas = torch.as_tensor(list(bandwidths), dtype=torch.float64, device=x.device)
    if sigmas.ndim != 1 or len(sigmas) == 0 or not (sigmas > 0).all():
        raise DistillError(f"bandwidths must be a non-empty list of positive numbers, got {bandwidths!r}.")

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        sq = torch.cdist(a, b).square().unsqueeze(-1)
        return torch.exp(-sq / (2 * sigmas.square())).sum(-1)

    n, m = len(x), len(y)
    kxx, kyy = kernel(x, x), kernel(y, y)
    xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(xx + yy - 2 * kernel(x, y).mean())


def frechet_distance(feat_x: object, feat_y: object) -> float:
    """Fréchet distance of Gaussians fitted to two feature sets (Heusel et al. 2017, the FID formula).

    ‖μx-μy‖² + Tr(Σx + Σy - 2(ΣxΣy)^½), with Tr(ΣxΣy)^½ taken from the eigenvalues of the
    symmetric matrix Σx^½ Σy Σx^½ in float64, so singular covariances (d > n) are fine.
    """
    x, y = as_pair(feat_x, feat_y, ("feat_x", "feat_y"))

    def stats(f: Tensor) -> tuple[Tensor, Tensor]:
        mu = f.mean(0)
        centred = f - mu
        return mu, centred.T @ centred / (len(f) - 1)

    return max(float(frechet_from_moments(*stats(x), *stats(y))), 0.0)


def frechet_from_moments(mu_x: Tensor, cov_x: Tensor, mu_y: Tensor, cov_y: Tensor) -> Tensor:
    """:func:`frechet_distance` from means (…, d) and covariances (…, d, d); ``mu_y`` / ``cov_y`` may
    carry a batch of leading dimensions (one Σx^½ serves them all)."""
    w, v = torch.linalg.eigh(cov_x)
    root_x = v @ torch.diag_embed(w.clamp(min=0).sqrt()) @ v.mT
    middle = root_x @ cov_y @ root_x
    trace_root = torch.linalg.eigvalsh((middle + middle.mT) / 2).clamp(min=0).sqrt().sum(-1)
    traces = (cov_x.diagonal(dim1=-2, dim2=-1) + cov_y.diagonal(dim1=-2, dim2=-1)).sum(-1)
    return (mu_x - mu_y).square().sum(-1) + traces - 2 * trace_root


def precision_recall(real_feat: object, fake_feat: object, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) from k-NN manifold estimates.

    Each set's manifold is the union of balls around its points with radius the distance to
    the k-th nearest neighbour. Precision: the fraction of fake points inside the real
    manifold; recall: the fraction of real points inside the fake manifold.
    """
    real, fake = as_pair(real_feat, fake_feat, ("real_feat", "fake_feat"))
    k = check_count("k", k)
    if k >= min(len(real), len(fake)):
        raise DistillError(
            f"k={k} needs more than k samples in each set, got {len(real)} real and {len(fake)} fake; "
            "lower k or pass more samples."
        )

    def radii(f: Tensor) -> Tensor:  # k-th neighbour distance, skipping the point itself
        return torch.cdist(f, f).kthvalue(k + 1, dim=1).values

    def inside(points: Tensor, support: Tensor) -> float:
        return float((torch.cdist(points, support) <= radii(support)).any(1).double().mean())

    return inside(fake, real), inside(real, fake)
