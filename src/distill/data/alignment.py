"""Input alignment of one domain's trials, so that domains (sessions, subjects, devices) look alike."""

from __future__ import annotations

import torch

from distill.errors import DistillError

#: Eigenvalues of the mean covariance below this fraction of the largest are raised to it.
EIGENVALUE_FLOOR = 1e-10


def euclidean_alignment(x: torch.Tensor) -> torch.Tensor:
    """Euclidean alignment of trials ``x`` (N, C, T): mean covariance → identity (He & Wu, 2020).

    He & Wu, IEEE TBME 2020, "Transfer Learning for Brain–Computer Interfaces: A Euclidean
    Space Data Alignment Approach". With ``R̄ = (1/N) Σ_i X_i X_iᵀ / T`` (uncentred, C×C),
    every trial becomes ``R̄^{-1/2} X_i``; call it on each domain separately. ``R̄^{-1/2}`` is
    the symmetric inverse square root from ``torch.linalg.eigh`` in float64, with eigenvalues
    floored at ``EIGENVALUE_FLOOR`` times the largest, so a singular ``R̄`` (fewer samples than
    channels, a constant-zero channel) gives finite but not exactly whitened trials. Returns a
    new tensor of ``x``'s dtype.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or 0 in x.shape:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise DistillError(
            f"euclidean_alignment expects a tensor of trials with shape (N, C, T) and no empty "
            f"dimension, got {shape}; add a trial axis with x.unsqueeze(0) for a single trial."
        )
    if not x.is_floating_point():
        raise DistillError(
            f"euclidean_alignment expects floating-point trials, got {x.dtype}; convert with x.float()."
        )
    trials = x.double()
    mean_cov = torch.einsum("nct,ndt->cd", trials, trials) / (trials.shape[0] * trials.shape[2])
    values, vectors = torch.linalg.eigh(mean_cov)
    floor = max(float(values.max()) * EIGENVALUE_FLOOR, torch.finfo(torch.float64).tiny)
    inv_sqrt = vectors @ torch.diag(values.clamp(min=floor).rsqrt()) @ vectors.T
    return (inv_sqrt @ trials).to(x.dtype)
