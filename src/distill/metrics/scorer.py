"""The scorer of generated samples: distances to held-out data beside the data's own noise floor,
with the excess over that floor and its interval, and the sampling time per sample."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from distill.data.base import DataSplits
from distill.errors import ConfigError
from distill.metrics.classification import accuracy
from distill.metrics.distances import frechet_distance, mmd_rbf, precision_recall, sliced_wasserstein
from distill.metrics.excess import EXCESS_KEYS, ChamferExcess, FrechetExcess, SlicedExcess
from distill.metrics.features import features
from distill.metrics.point_sets import POINT_SET_METRICS, pairwise_chamfer, point_set_metrics

CHUNK = 500
MMD_POINTS = 2000  # MMD is quadratic in n; the first 2,000 points of each set keep it to ~1 s


@dataclass
class SampleRow:
    """One generator at one step count: its metrics, NFE and sampling wall time."""

    model: str
    steps: int
    nfe: int
    metrics: dict[str, float]
    ms_per_sample: float
    samples: Tensor | None = field(default=None, repr=False)


class Scorer:
    """Metrics of samples against ``n`` held-out test points beside the noise floor: the same
    metrics on ``n`` other real points (an independent draw, kept as ``reference``).

    ``floor_from="train"``: the reference is ``n`` training points. ``"test"``: the test split is cut
    into two disjoint halves, samples are scored against half A and the floor is half B vs half A,
    so both come from the same held-out distribution (``n`` is capped at half the test split).

    2-D data: sliced Wasserstein (Bonneel et al., 2015) and MMD (on at most ``MMD_POINTS``
    points). Images: Fréchet distance
    and precision/recall on ``classifier`` features, plus label agreement when conditional.
    Point sets (``points``, samples ``(N, 3)``): MMD-CD, COV and 1-NNA on Chamfer distances
    (:mod:`distill.metrics.point_sets`).
    With ``bootstrap`` > 0 every score also holds the headline distance's excess over the floor and
    its 95 % interval from that many resamples (:mod:`distill.metrics.excess`), and ``floor`` holds
    ``floor_spread``, the floor's bootstrap standard deviation.
    """

    def __init__(self, splits: DataSplits, n: int, seed: int, conditional: bool,
                 classifier: nn.Module | None = None, layer: str = "head.1",
                 floor_from: Literal["train", "test"] = "train", bootstrap: int = 0, points: bool = False) -> None:
        test_x, test_y = splits.test.x, splits.test.y
        generator = torch.Generator().manual_seed(seed)
        if floor_from == "train":
            n = min(n, len(test_x), len(splits.train))
            pick_test = torch.randperm(len(test_x), generator=generator)[:n]
            pick_reference = torch.randperm(len(splits.train), generator=generator)[:n]
            reference = splits.train
        elif floor_from == "test":
            half = len(test_x) // 2
            n = min(n, half)
            order = torch.randperm(len(test_x), generator=generator)
            pick_test, pick_reference, reference = order[:n], order[half:half + n], splits.test
        else:
            raise ConfigError(f"floor_from must be 'train' or 'test', got {floor_from!r}.")
        if bootstrap < 0:
            raise ConfigError(f"bootstrap must be ≥ 0 resamples (0 skips the excess), got {bootstrap}.")
        self.real, self.labels = test_x[pick_test], test_y[pick_test]
        self.noise = torch.randn(self.real.shape, generator=generator)
        self.conditional, self.classifier, self.layer, self.seed = conditional, classifier, layer, seed
        if points and classifier is not None:
            raise ConfigError("point sets are scored by Chamfer distances, not by a classifier's features.")
        self.points = points
        self.real_cloud = self._cloud(self.real)
        self.reference, self.reference_labels = reference.x[pick_reference], reference.y[pick_reference]
        self.excess = None
        reference_cloud = self._cloud(self.reference)
        self.floor = self._metrics(self.reference, reference_cloud, self.reference_labels)
        if bootstrap:
            estimator = ChamferExcess if points else SlicedExcess if classifier is None else FrechetExcess
            self.excess = estimator(self.real_cloud, reference_cloud, resamples=bootstrap, seed=seed)
            self.floor["floor_spread"] = self.excess.floor_spread

    def _cloud(self, samples: Tensor) -> Tensor:
        """What the distances compare: flattened points (2-D data), classifier features (images), or each
        point set's Chamfer distances to the held-out sets (point sets; the real draw's own come first)."""
        if self.points:
            return pairwise_chamfer(samples, self.real)
        return samples.flatten(1) if self.classifier is None else features(self.classifier, samples, self.layer)

    def _metrics(self, samples: Tensor, cloud: Tensor, labels: Tensor | None) -> dict[str, float]:
        real = self.real_cloud
        if self.points:
            return point_set_metrics(cloud, pairwise_chamfer(samples, samples), real)
        if self.classifier is None:
            return {"swd": sliced_wasserstein(real, cloud), "mmd": mmd_rbf(real[:MMD_POINTS], cloud[:MMD_POINTS])}
        precision, recall = precision_recall(real, cloud)
        scores = {"fd": frechet_distance(real, cloud), "precision": precision, "recall": recall}
        if self.conditional and labels is not None:
            scores["agreement"] = accuracy(self.classifier, samples, labels)
        return scores

    def score(self, samples: Tensor, labels: Tensor | None = None) -> dict[str, float]:
        """The metrics of ``samples`` (with the labels they were conditioned on); NaN if any diverged."""
        if not torch.isfinite(samples).all():
            names = (POINT_SET_METRICS if self.points else ("swd", "mmd") if self.classifier is None
                     else ("fd", "precision", "recall"))
            names += () if self.excess is None else EXCESS_KEYS
            return dict.fromkeys(names, float("nan"))
        cloud = self._cloud(samples)
        scores = self._metrics(samples, cloud, labels)
        if self.excess is not None:
            scores.update(self.excess(cloud).as_metrics())
        return scores

    def run(self, label: str, generator, steps: int) -> SampleRow:
        """Sample ``n`` points from ``generator`` in ``steps`` steps, time it and score it."""
        y = self.labels if self.conditional else None
        with torch.random.fork_rng():  # samplers that re-noise draw the same noise for every row
            torch.manual_seed(self.seed)
            started = time.perf_counter()
            device = generator.device
            samples = torch.cat([generator.sample(noise.to(device), None if y is None else y[i:i + CHUNK].to(device),
                                                  steps).cpu()
                                 for i, noise in zip(range(0, len(self.noise), CHUNK), self.noise.split(CHUNK))])
            ms = 1000 * (time.perf_counter() - started) / len(samples)
        return SampleRow(label, steps, generator.evaluations(steps, y), self.score(samples, y), ms, samples)
