"""Sample-quality metrics for comparing few-step students with many-step teachers.

Nothing is downloaded: distances are computed on raw samples or on features of a
classifier trained in this repository (``features``). Every score should be read
against its ``noise_floor``, the same metric between two independent draws of real data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import ot
import torch
from torch import Tensor, nn

from distill.errors import DistillError
from distill.taps import resolve_module


def _cloud(name: str, x: object) -> Tensor:
    """``x`` as a finite float64 (n, d) tensor with n >= 2."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise DistillError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}.")
    if x.ndim != 2:
        raise DistillError(
            f"{name} must be 2-D (samples, features), got shape {tuple(x.shape)}; "
            "flatten images with x.flatten(1)."
        )
    if len(x) < 2:
        raise DistillError(f"{name} has {len(x)} sample(s); these metrics need at least 2.")
    x = x.detach().to(torch.float64)
    if not torch.isfinite(x).all():
        raise DistillError(f"{name} contains NaN or infinite values; drop or fix those samples first.")
    return x


def _pair(x: object, y: object, names: tuple[str, str] = ("x", "y")) -> tuple[Tensor, Tensor]:
    x, y = _cloud(names[0], x), _cloud(names[1], y)
    if x.shape[1] != y.shape[1]:
        raise DistillError(
            f"{names[0]} has {x.shape[1]} features but {names[1]} has {y.shape[1]}; "
            "both must come from the same space (same data shape or feature layer)."
        )
    return x, y.to(x.device)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DistillError(f"{name} must be a positive integer, got {value!r}.")
    return value


def sliced_wasserstein(x: object, y: object, projections: int = 500, seed: int = 0) -> float:
    """Sliced Wasserstein-2 distance of two clouds (n, d), (m, d) (Bonneel et al. 2015), via POT."""
    x, y = _pair(x, y)
    n = _positive_int("projections", projections)
    return float(ot.sliced_wasserstein_distance(x.cpu().numpy(), y.cpu().numpy(), n_projections=n, seed=seed))


def mmd_rbf(x: object, y: object, bandwidths: Sequence[float] = (0.1, 0.2, 0.5, 1.0, 2.0)) -> float:
    """Unbiased squared MMD (Gretton et al. 2012) with a sum of RBF kernels of absolute widths σ.

    The kernel is Σ_σ exp(-‖a-b‖² / 2σ²). Being unbiased, the estimate can be slightly
    negative when both clouds come from the same distribution.
    """
    x, y = _pair(x, y)
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
    x, y = _pair(feat_x, feat_y, ("feat_x", "feat_y"))

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
    real, fake = _pair(real_feat, fake_feat, ("real_feat", "fake_feat"))
    k = _positive_int("k", k)
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


def _eval_batches(model: nn.Module, x: Tensor, batch_size: int) -> Iterator[Tensor]:
    """``model``'s outputs on ``x`` in batches, in eval mode without grad; the mode is restored."""
    if not isinstance(x, Tensor):
        raise DistillError(f"samples must be a torch tensor, got {type(x).__name__}.")
    batch_size = _positive_int("batch_size", batch_size)
    device = next(model.parameters(), torch.empty(0)).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in x.split(batch_size):
                yield model(batch.to(device))
    finally:
        model.train(was_training)


def label_agreement(classifier: nn.Module, samples: Tensor, labels: Tensor, batch_size: int = 500) -> float:
    """Fraction of class-conditional samples whose classifier argmax is their conditioning label."""
    if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.is_floating_point():
        raise DistillError("labels must be a 1-D integer tensor of class indices.")
    if len(samples) != len(labels) or len(labels) == 0:
        raise DistillError(
            f"got {len(samples)} samples and {len(labels)} labels; "
            "pass one label per sample (and at least one)."
        )
    predicted = torch.cat([out.argmax(1).cpu() for out in _eval_batches(classifier, samples, batch_size)])
    return float((predicted == labels.cpu()).double().mean())


def _keep_output(store: list, module: nn.Module, args: tuple, output: Tensor) -> None:
    store.append(output.detach().flatten(1).float().cpu())


def features(model: nn.Module, x: Tensor, layer: str = "head.1", batch_size: int = 500) -> Tensor:
    """Per-sample features (n, f) at module ``layer`` of a classifier, flattened, via a forward hook.

    For the repository's image ConvNet, ``"head.1"`` is the pooled penultimate feature;
    Fréchet distance on it is an FID-like score with a locally trained network.
    """
    store: list[Tensor] = []
    handle = resolve_module(model, layer, "feature model").register_forward_hook(
        functools.partial(_keep_output, store)
    )
    try:
        for _ in _eval_batches(model, x, batch_size):
            pass
    finally:
        handle.remove()
    return torch.cat(store)


def noise_floor(metric: Callable[[object, object], float], draw_a: object, draw_b: object) -> float:
    """The same metric between two independent draws of real data; differences inside it are ties."""
    return float(metric(draw_a, draw_b))


@dataclass(frozen=True)
class Scored:
    """A metric value with its noise floor (``noise_floor`` on two real draws of the same size)."""

    value: float
    floor: float

    @property
    def ratio_to_floor(self) -> float:
        """How many noise floors the value is; about 1 means indistinguishable from real data."""
        if self.floor <= 0:
            raise DistillError(
                f"ratio_to_floor needs a positive floor, got {self.floor}; the unbiased MMD floor can be "
                "≤ 0, so compare with `within_floor` or use more samples."
            )
        return self.value / self.floor

    @property
    def within_floor(self) -> bool:
        """True when the value is no larger than the floor: a tie with real data."""
        return self.value <= self.floor
