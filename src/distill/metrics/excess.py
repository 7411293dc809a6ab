"""How far samples are from held-out data beyond the data's own noise floor, with a bootstrap interval.

Two independent real draws are already ``floor`` apart, so a distance is read as its excess over
that floor, on the distance scale: √max(SW2² − floor², 0) for the sliced Wasserstein-2 distance,
√max(FD − FD_floor, 0) for the Fréchet distance (already a squared distance), √max(MMD-CD − floor, 0) for
point sets' MMD-CD (in squared units too). The interval is a percentile bootstrap (Efron 1979): the
generated rows and the reference draw are resampled with replacement, the held-out draw both are
compared with stays fixed. Every row of a table meets the same held-out draw, so the interval is the
uncertainty of this row and of its floor, and rows compared with each other stay paired (each uses
the same resample indices).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from distill.errors import DistillError, check_count
from distill.metrics.checks import as_cloud
from distill.metrics.distances import frechet_from_moments

EXCESS_KEYS = ("excess", "excess_low", "excess_high")  # the metric names of an Excess in a results row


@dataclass(frozen=True)
class Excess:
    """An excess over the floor and its bootstrap percentile interval."""

    value: float
    low: float
    high: float

    def as_metrics(self) -> dict[str, float]:
        """The three numbers under the metric names a results row uses."""
        return dict(zip(EXCESS_KEYS, (self.value, self.low, self.high)))


def bootstrap_counts(n: int, resamples: int, seed: int) -> Tensor:
    """How often each of ``n`` rows is drawn in each of ``resamples`` draws with replacement: (resamples, n)."""
    picks = torch.randint(n, (resamples, n), generator=torch.Generator().manual_seed(seed))
    return torch.zeros(resamples, n, dtype=torch.long).scatter_add_(1, picks, torch.ones_like(picks))


def directions(d: int, count: int, seed: int) -> Tensor:
    """``count`` unit directions (d, count) drawn from ``seed``. In 2-D: equally spaced angles over
    [0, π) with a random offset, a stratified quadrature of the angle integral that is far more
    accurate than as many independent directions; otherwise independent uniform directions."""
    generator = torch.Generator().manual_seed(seed)
    if d == 2:
        offset = torch.rand(1, dtype=torch.float64, generator=generator)
        angles = (torch.arange(count, dtype=torch.float64) + offset) * torch.pi / count
        return torch.stack([angles.cos(), angles.sin()])
    drawn = torch.randn(d, count, dtype=torch.float64, generator=generator)
    return drawn / drawn.norm(dim=0)


class _FloorExcess:
    """The bootstrap shared by both distances: subclasses give the squared distance of a cloud,
    weighted by row counts (B, n), to the fixed held-out draw, and its metric scale."""

    def __init__(self, real: object, reference: object, resamples: int = 200, seed: int = 0,
                 level: float = 0.95) -> None:
        self.resamples, self.seed = check_count("resamples", resamples), seed
        if not 0 < level < 1:
            raise DistillError(f"level must be in (0, 1), got {level!r}; 0.95 gives a 95 % interval.")
        self.level = level
        self._prepare(as_cloud("real", real))
        reference = as_cloud("reference", reference)
        self._floor = self._squared(reference, torch.ones(1, len(reference), dtype=torch.long))
        self._floor_resampled = self._squared(reference, bootstrap_counts(len(reference), resamples, seed))
        self.floor = float(self._scale(self._floor))
        self.floor_spread = float(self._scale(self._floor_resampled).std())

    def __call__(self, samples: object) -> Excess:
        """The excess of ``samples`` over the floor, with its interval at ``level``."""
        samples = as_cloud("samples", samples)
        point = self._excess(self._squared(samples, torch.ones(1, len(samples), dtype=torch.long)), self._floor)
        counts = bootstrap_counts(len(samples), self.resamples, self.seed + 1)
        resampled = self._excess(self._squared(samples, counts), self._floor_resampled)
        tails = torch.tensor([(1 - self.level) / 2, (1 + self.level) / 2], dtype=resampled.dtype)
        low, high = torch.quantile(resampled, tails).tolist()
        return Excess(float(point), low, high)

    @staticmethod
    def _excess(squared: Tensor, floor_squared: Tensor) -> Tensor:
        return (squared - floor_squared).clamp(min=0).sqrt()

    def _prepare(self, real: Tensor) -> None:
        raise NotImplementedError

    def _squared(self, cloud: Tensor, counts: Tensor) -> Tensor:
        raise NotImplementedError

    def _scale(self, squared: Tensor) -> Tensor:
        raise NotImplementedError


class SlicedExcess(_FloorExcess):
    """The sliced Wasserstein-2 (Bonneel et al. 2015) excess of samples over the floor ``reference``
    vs ``real`` (clouds (n, d) of one size), on ``projections`` fixed :func:`directions` from ``seed``.

    Each resample costs O(projections · n): per direction the cloud is sorted once, a resample is
    its row counts in that order, and the cross term Σ_k a₍k₎ r₍k₎ of W2² between the resample and
    the fixed real draw comes from the real draw's prefix sums at the cumulative counts.
    """

    def __init__(self, real: object, reference: object, resamples: int = 200, seed: int = 0,
                 level: float = 0.95, projections: int = 32) -> None:
        self.projections = check_count("projections", projections)
        super().__init__(real, reference, resamples, seed, level)

    def _prepare(self, real: Tensor) -> None:
        self.directions = directions(real.shape[1], self.projections, self.seed)
        ordered = (real @ self.directions).T.sort(1).values  # (projections, n)
        self.real_squares = ordered.square().sum(1)
        self.real_prefix = torch.cat([torch.zeros(self.projections, 1, dtype=torch.float64), ordered.cumsum(1)], 1)

    def _squared(self, cloud: Tensor, counts: Tensor) -> Tensor:
        n = self.real_prefix.shape[1] - 1
        if len(cloud) != n or cloud.shape[1] != len(self.directions):
            raise DistillError(f"sliced excess compares clouds of the real draw's shape ({n}, "
                               f"{len(self.directions)}), got {tuple(cloud.shape)}; draw as many samples as "
                               "real points.")
        projected = cloud.to(torch.float64) @ self.directions  # (n, projections)
        ordered, order = projected.T.sort(1)
        steps = ordered.diff(dim=1)
        squares = counts.to(torch.float64) @ projected.square()  # Σ_k a₍k₎² of each resample
        cross = torch.stack([
            # Σ_i a_i (R[C_i] − R[C_i−1]) summed by parts, C the cumulative counts in sorted order
            ordered[:, -1] * self.real_prefix[:, -1]
            - torch.linalg.vecdot(self.real_prefix.gather(1, row.take(order).cumsum(1)[:, :-1]), steps)
            for row in counts])
        return ((squares - 2 * cross + self.real_squares) / n).mean(1)

    def _scale(self, squared: Tensor) -> Tensor:
        return squared.sqrt()


class FrechetExcess(_FloorExcess):
    """The Fréchet distance (Heusel et al. 2017) excess of feature rows over the floor ``reference`` vs
    ``real`` (features computed once; each resample re-weights the rows of the Gaussian fit)."""

    def _prepare(self, real: Tensor) -> None:
        mean, cov = self._moments(real, torch.ones(1, len(real), dtype=torch.long))
        self.real_moments = mean[0], cov[0]

    @staticmethod
    def _moments(cloud: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
        """Means (B, d) and unbiased covariances (B, d, d) of the resamples ``counts`` describes."""
        centre = cloud.mean(0)
        centred, weights = cloud - centre, counts.to(torch.float64)
        n = weights.sum(1)
        means = weights @ centred / n[:, None]
        seconds = torch.stack([(centred.T * row) @ centred for row in weights])
        covs = (seconds - n[:, None, None] * means[:, :, None] * means[:, None, :]) / (n[:, None, None] - 1)
        return means + centre, covs

    def _squared(self, cloud: Tensor, counts: Tensor) -> Tensor:
        if cloud.shape[1] != len(self.real_moments[0]):
            raise DistillError(f"features have {cloud.shape[1]} dimensions, the real draw's "
                               f"{len(self.real_moments[0])}; use the same classifier layer for both.")
        return frechet_from_moments(*self.real_moments, *self._moments(cloud, counts)).clamp(min=0)

    def _scale(self, squared: Tensor) -> Tensor:
        return squared


class ChamferExcess(_FloorExcess):
    """MMD-CD's excess over the floor, ``√max(MMD-CD − floor, 0)`` (MMD-CD is in squared units, read on the
    distance scale as the Fréchet excess is), with its percentile bootstrap interval.

    It takes Chamfer matrices, one row per set against the fixed real draw: ``real`` that draw against
    itself, ``reference`` the second real draw against it, and each call the generated sets against it
    (:func:`~distill.metrics.point_sets.pairwise_chamfer`); a resample keeps the rows it draws, so its
    MMD-CD is the mean over real sets of the minimum over those rows."""

    def _prepare(self, real: Tensor) -> None:
        self.real_count = real.shape[1]

    def _squared(self, cloud: Tensor, counts: Tensor) -> Tensor:
        if cloud.shape[1] != self.real_count or counts.shape[1] != len(cloud):
            raise DistillError(f"ChamferExcess takes Chamfer matrices against the real draw's {self.real_count} "
                               f"sets, got {tuple(cloud.shape)}.")
        return torch.stack([cloud[row > 0].amin(dim=0).mean() for row in counts])

    def _scale(self, squared: Tensor) -> Tensor:
        return squared
